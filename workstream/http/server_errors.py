"""What the HTTP server answers itself, before the app sees a request, as the API's errors.

Waitress answers some requests on its own: headers over the limit (431), a body over the
limit (413), a malformed request (400), an unsupported transfer coding (waitress: 501), or
an app that failed to respond (500). Its bodies are text that names the library; the server
(`JsonErrorTask` in `server.py`) sends the API's error body instead, with the code and
message chosen here. A transfer coding other than `chunked` is answered 400, not 501: it is
the client's mistake, and a 5xx would page whoever watches the server's error rate for
something a client did.

No waitress import here: this is the policy, `server.py` applies it.
"""

from __future__ import annotations

from workstream.http.errors import INTERNAL_ERROR_CODE, INTERNAL_ERROR_MESSAGE


def describe_server_error(
    status: int, reason: str, *, max_header_bytes: int, max_body: int
) -> tuple[int, str, str, str]:
    """(status, reason, code, message) of the answer to an error waitress found itself with
    `status` and `reason`; the limits are the server's, named in the messages."""
    if status == 501:
        # An unsupported transfer coding: the client's mistake (see the module doc).
        status, reason = 400, "Bad Request"
        code, message = "invalid_request", "the request's transfer coding is not supported"
    elif status == 413:
        code, message = "payload_too_large", f"the request body is larger than {max_body} bytes"
    elif status == 431:
        code = "headers_too_large"
        message = f"the request headers are larger than {max_header_bytes} bytes"
    elif status >= 500:
        code, message = INTERNAL_ERROR_CODE, INTERNAL_ERROR_MESSAGE
    else:
        code, message = "invalid_request", "the HTTP request is malformed"
    return status, reason, code, message
