"""PyTorch datasets, samplers and the log-mel front end over the download cache (planned)."""
