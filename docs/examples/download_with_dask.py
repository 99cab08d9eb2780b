"""Run the download's clip tasks on a Dask cluster (here a LocalCluster of 2 processes).

Offline, this uses the demo's loopback stand-ins; against YouTube, call
``audioset_data.download(split="unbalanced", executor=client.get_executor())`` instead.

Run from the repository root:
    AUDIOSET_CSV_BASE_URL=../shared/data/segments python docs/examples/download_with_dask.py
"""

from dask.distributed import Client, LocalCluster

from audioset_data import open_cache
from audioset_data.downloader.demo import run_demo

if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=2, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            report = run_demo(n_clips=16, executor=client.get_executor(), progress=False)
    print(report.summary())
    print(open_cache("demo"))
