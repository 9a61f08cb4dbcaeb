"""What `protoc --python_out` makes of the gRPC page's `user.proto`, written out by hand (no
protoc here): its messages, serialized as JSON rather than protobuf's wire format."""

import json


class _Message:
    FIELDS = ()

    def __init__(self, **fields):
        for name in self.FIELDS:
            setattr(self, name, fields.pop(name, None))
        if fields:
            raise ValueError(f"{type(self).__name__} has no field {sorted(fields)[0]!r}")

    def SerializeToString(self):
        return json.dumps({name: getattr(self, name) for name in self.FIELDS}).encode()

    @classmethod
    def FromString(cls, data):
        return cls(**json.loads(data or b"{}"))

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__


class GetUserRequest(_Message):
    FIELDS = ("user_id",)


class User(_Message):
    FIELDS = ("id", "name", "email")


class ListUsersRequest(_Message):
    FIELDS = ("limit",)


class CreateUserRequest(_Message):
    FIELDS = ("name", "email")


class CreateUsersResponse(_Message):
    FIELDS = ("created_count",)


class ChatMessage(_Message):
    FIELDS = ("text", "timestamp")
