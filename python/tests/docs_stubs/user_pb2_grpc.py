"""What `protoc --grpc_python_out` makes of the gRPC page's `user.proto` (service
`user.UserService`), written out by hand: the servicer base, its registration, the stub."""

import grpc

import user_pb2

_METHODS = {
    # name: (request type, response type, request streaming, response streaming)
    "GetUser": (user_pb2.GetUserRequest, user_pb2.User, False, False),
    "ListUsers": (user_pb2.ListUsersRequest, user_pb2.User, False, True),
    "CreateUsers": (user_pb2.CreateUserRequest, user_pb2.CreateUsersResponse, True, False),
    "Chat": (user_pb2.ChatMessage, user_pb2.ChatMessage, True, True),
}

_HANDLERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class UserServiceServicer:
    """The service's methods, each answering UNIMPLEMENTED until overridden."""

    def _unimplemented(self, request, context):
        context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        context.set_details("Method not implemented!")
        raise NotImplementedError("Method not implemented!")

    GetUser = ListUsers = CreateUsers = Chat = _unimplemented


def add_UserServiceServicer_to_server(servicer, server):
    handlers = {
        name: _HANDLERS[(requests, responses)](
            getattr(servicer, name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, (request, response, requests, responses) in _METHODS.items()
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("user.UserService", handlers),))


class UserServiceStub:
    """A client of `user.UserService`."""

    def __init__(self, channel):
        kinds = {
            (False, False): channel.unary_unary,
            (False, True): channel.unary_stream,
            (True, False): channel.stream_unary,
            (True, True): channel.stream_stream,
        }
        for name, (request, response, requests, responses) in _METHODS.items():
            setattr(self, name, kinds[(requests, responses)](
                f"/user.UserService/{name}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            ))
