"""The ``tf.train.SequenceExample`` message classes, built without TensorFlow.

The schema is TensorFlow's ``example.proto`` / ``feature.proto`` (Apache-2.0), declared here as
data and built in a private :class:`~google.protobuf.descriptor_pool.DescriptorPool`, so these
classes never clash with TensorFlow's or the ``tfrecord`` package's copies in the default pool
when either is imported in the same process. The wire format is what matters, and it is the
same.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "tensorflow"
_F = descriptor_pb2.FieldDescriptorProto


def _message(file: descriptor_pb2.FileDescriptorProto, name: str,
             fields: list[tuple[str, int, int, int, str | None, bool]]) -> Any:
    """Add message ``name`` with ``(name, number, label, type, type_name, packed)`` fields."""
    msg = file.message_type.add(name=name)
    for fname, number, label, ftype, type_name, packed in fields:
        field = msg.field.add(name=fname, number=number, label=label, type=ftype)
        if type_name:
            field.type_name = type_name
        if packed:
            field.options.packed = True
    return msg


def _map_entry(msg: Any, name: str, value_type: str) -> None:
    """Add the nested ``<Name>Entry`` message of a ``map<string, value_type>`` field."""
    entry = msg.nested_type.add(name=name)
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
    entry.field.add(name="value", number=2, label=_F.LABEL_OPTIONAL, type=_F.TYPE_MESSAGE,
                    type_name=value_type)


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="audioset_data/features/example.proto", package=_PACKAGE, syntax="proto3")
    rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    _message(f, "BytesList", [("value", 1, rep, _F.TYPE_BYTES, None, False)])
    _message(f, "FloatList", [("value", 1, rep, _F.TYPE_FLOAT, None, True)])
    _message(f, "Int64List", [("value", 1, rep, _F.TYPE_INT64, None, True)])
    feature = _message(f, "Feature", [
        ("bytes_list", 1, opt, _F.TYPE_MESSAGE, ".tensorflow.BytesList", False),
        ("float_list", 2, opt, _F.TYPE_MESSAGE, ".tensorflow.FloatList", False),
        ("int64_list", 3, opt, _F.TYPE_MESSAGE, ".tensorflow.Int64List", False),
    ])
    feature.oneof_decl.add(name="kind")
    for fld in feature.field:
        fld.oneof_index = 0
    features = _message(f, "Features", [
        ("feature", 1, rep, _F.TYPE_MESSAGE, ".tensorflow.Features.FeatureEntry", False)])
    _map_entry(features, "FeatureEntry", ".tensorflow.Feature")
    _message(f, "FeatureList", [("feature", 1, rep, _F.TYPE_MESSAGE, ".tensorflow.Feature",
                                 False)])
    lists = _message(f, "FeatureLists", [
        ("feature_list", 1, rep, _F.TYPE_MESSAGE, ".tensorflow.FeatureLists.FeatureListEntry",
         False)])
    _map_entry(lists, "FeatureListEntry", ".tensorflow.FeatureList")
    _message(f, "Example", [("features", 1, opt, _F.TYPE_MESSAGE, ".tensorflow.Features",
                             False)])
    _message(f, "SequenceExample", [
        ("context", 1, opt, _F.TYPE_MESSAGE, ".tensorflow.Features", False),
        ("feature_lists", 2, opt, _F.TYPE_MESSAGE, ".tensorflow.FeatureLists", False),
    ])
    return f


@cache
def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    proto = _file()
    pool.Add(proto)
    fd = pool.FindFileByName(proto.name)
    get_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if get_class is None:
        get_class = message_factory.MessageFactory(pool).GetPrototype
    return {name: get_class(fd.message_types_by_name[name])
            for name in ("Feature", "Features", "FeatureList", "FeatureLists", "Example",
                         "SequenceExample")}


def sequence_example_class() -> Any:
    """The ``tensorflow.SequenceExample`` message class (built once, in a private pool)."""
    return _classes()["SequenceExample"]


def example_class() -> Any:
    """The ``tensorflow.Example`` message class (built once, in a private pool)."""
    return _classes()["Example"]


__all__ = ["example_class", "sequence_example_class"]
