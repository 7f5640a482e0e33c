"""Stand-ins for TensorFlow Serving on loopback, serving SavedModel versions for the tests.

No model server binary or Docker exists on the project's machines, so these follow TF Serving's
documented behaviour closely enough to test a client against:

- REST: `POST /v1/models/<name>[/versions/<n>]:predict` with the row or columnar JSON of
  cvae.serving_json; errors are `{"error": "..."}` with TF Serving's HTTP statuses (400 for a bad
  request or a failed run, 404 for an unknown model or version).
- gRPC: `tensorflow.serving.PredictionService/Predict` with PredictRequest/PredictResponse;
  errors are gRPC statuses (NOT_FOUND, INVALID_ARGUMENT, ...).

Each version is loaded the way TF Serving loads it: the `serve` MetaGraph into a TF1 session, its
SignatureDefs read from saved_model.pb, and a signature run by feeding and fetching the tensor
names they list. The highest version is served when a request names none.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from cvae.serving import rest_json as serving_json

_PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:predict", re.IGNORECASE)
# TF Serving's mapping of error codes to HTTP statuses (model_servers/http_server.cc).
_HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
                "NOT_FOUND": 404, "DEADLINE_EXCEEDED": 504, "UNIMPLEMENTED": 501,
                "UNAVAILABLE": 503, "RESOURCE_EXHAUSTED": 429}
# TensorFlow's error codes are gRPC's status codes.
_GRPC_CODE = {code.value[0]: code for code in grpc.StatusCode}


class ServableNotFound(LookupError):
    """No such model name or version; the message is TF Serving's."""


class Servable:
    """One loaded version: its SignatureDefs and a TF1 session to run them in."""

    def __init__(self, path: Path):
        self.version = int(path.name)
        self.session = tf.compat.v1.Session(graph=tf.Graph())
        meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(path))
        self.signature_defs = dict(meta_graph.signature_def)

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The signature's outputs for `inputs` (already checked against it), keyed by name."""
        signature = self.signature_defs[signature_name]
        feeds = {signature.inputs[name].name: value for name, value in inputs.items()}
        fetches = {name: info.name for name, info in signature.outputs.items()}
        return self.session.run(fetches, feeds)


class ModelStore:
    """Every integer version under `base_dir`, served under `name`; counts the predict requests
    that reach any server using it."""

    def __init__(self, base_dir: str | Path, name: str = "cvae"):
        self.name = name
        self.requests = 0
        self._lock = threading.Lock()
        self._versions = {s.version: s for s in (Servable(p) for p in Path(base_dir).iterdir()
                                                 if p.name.isdigit())}
        if not self._versions:
            raise FileNotFoundError(f"{base_dir}: no version directories")

    def received(self) -> None:
        with self._lock:
            self.requests += 1

    def servable(self, name: str, version: int | None) -> Servable:
        """The version asked for (the highest when None); ServableNotFound otherwise."""
        wanted = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        if name != self.name:
            raise ServableNotFound(f"Servable not found for request: {wanted}")
        found = self._versions.get(max(self._versions) if version is None else version)
        if found is None:
            raise ServableNotFound(f"Servable not found for request: {wanted}")
        return found

    def close(self) -> None:
        for servable in self._versions.values():
            servable.session.close()


def _op_error_message(error: tf.errors.OpError) -> str:
    """The run's error as TF Serving reports it: the C++ status message, without the
    "Graph execution error:" line that TensorFlow's Python session adds in front."""
    return re.sub(r"^Graph execution error:\s*", "", error.message)


def rest_predict(store: ModelStore, path: str, body: bytes) -> tuple[int, dict]:
    """(HTTP status, JSON body) for a POST to `path`, as TF Serving's REST API answers it."""
    match = _PREDICT_PATH.fullmatch(path)
    if not match:
        return 400, {"error": f"Malformed request: POST {path}"}
    name, version = match.group(1), match.group(2)
    try:
        servable = store.servable(name, None if version is None else int(version))
        request = serving_json.parse_body(body)
        signature_name, signature = serving_json.select_signature(request,
                                                                  servable.signature_defs)
        row_format = serving_json.is_row_format(request)
        outputs = servable.run(signature_name,
                               serving_json.request_to_tensors(request, signature))
    except ServableNotFound as e:
        return 404, {"error": str(e)}
    except serving_json.RequestError as e:
        return 400, {"error": str(e)}
    except tf.errors.OpError as e:  # e.g. the model's own "label out of range" check
        return _HTTP_STATUS.get(_GRPC_CODE[e.error_code].name, 500), \
            {"error": _op_error_message(e)}
    return 200, serving_json.outputs_to_response(outputs, row_format)


def _wait(delay: float, stop: threading.Event) -> bool:
    """Waits `delay` seconds before answering (to test client timeouts), cut short when the
    server stops; True if the request should still be answered."""
    if delay:
        stop.wait(delay)
    return not stop.is_set()


class _RestHandler(BaseHTTPRequestHandler):
    # set on the subclass made for each server
    store: ModelStore
    delay: float
    stop: threading.Event

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.store.received()
        if not _wait(self.delay, self.stop):
            return
        status, answer = rest_predict(self.store, self.path, body)
        self._reply(status, answer)

    def do_GET(self):
        self._reply(400, {"error": f"Malformed request: GET {self.path}"})

    def _reply(self, status: int, answer: dict) -> None:
        data = serving_json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # keep the test output quiet
        pass


@contextlib.contextmanager
def rest_server(store: ModelStore, delay: float = 0.0):
    """Serves `store` over HTTP on a free loopback port, answering each request after `delay`
    seconds; yields the base URL, http://127.0.0.1:<port>."""
    stop = threading.Event()
    handler = type("Handler", (_RestHandler,), {"store": store, "delay": delay, "stop": stop})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True  # a request still waiting out a delay does not block shutdown
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, store: ModelStore, delay: float, stop: threading.Event):
        self.store, self.delay, self.stop = store, delay, stop

    def Predict(self, request, context):
        self.store.received()
        if not _wait(self.delay, self.stop):
            context.abort(grpc.StatusCode.UNAVAILABLE, "server is stopping")
        spec = request.model_spec
        try:
            servable = self.store.servable(
                spec.name, spec.version.value if spec.HasField("version") else None)
        except ServableNotFound as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        name = spec.signature_name or serving_json.DEFAULT_SIGNATURE
        if name not in servable.signature_defs:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f'Serving signature name: "{name}" not found in signature def')
        arrays = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        try:
            outputs = servable.run(
                name, serving_json.check_inputs(arrays, servable.signature_defs[name]))
        except serving_json.RequestError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except tf.errors.OpError as e:
            context.abort(_GRPC_CODE[e.error_code], _op_error_message(e))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = name
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response


@contextlib.contextmanager
def grpc_server(store: ModelStore, delay: float = 0.0):
    """Serves `store` over gRPC on a free loopback port, answering each request after `delay`
    seconds; yields "127.0.0.1:<port>"."""
    stop = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionService(store, delay, stop), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        server.stop(grace=None).wait()


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
