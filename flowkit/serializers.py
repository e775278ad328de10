"""Public path of the serializers, which live in :mod:`flowkit.state.serializers`."""

from flowkit.state.serializers import (
    JSONSerializer,
    PickleSerializer,
    SerializationError,
    Serializer,
)

__all__ = ["JSONSerializer", "PickleSerializer", "SerializationError", "Serializer"]
