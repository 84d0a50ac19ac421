"""An S3-compatible server for the backup tests: moto's S3 on 127.0.0.1, behind a TLS endpoint
with a self-signed certificate.

Werkzeug's own TLS closes connections without a close_notify, which pgBackRest (OpenSSL 3)
reports as "unexpected eof while reading"; real S3 closes cleanly. So moto serves plain HTTP on
a private port, and this script terminates TLS in front of it, ending every session properly.

usage: s3_server.py PORT BUCKET ACCESS_KEY_ID SECRET_ACCESS_KEY
Prints "ready" once the bucket exists.
"""

import select
import socket
import ssl
import sys
import threading

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import generate_adhoc_ssl_context, make_server


def serve_tls(client, context, backend_port):
    """Relays one connection. One thread per connection: an SSL object is not safe to use from two."""
    try:
        tls = context.wrap_socket(client, server_side=True)
    except (OSError, ssl.SSLError):
        client.close()
        return
    backend = socket.create_connection(("127.0.0.1", backend_port))
    open_ends = {tls, backend}
    try:
        while open_ends:
            readable = [tls] if tls.pending() else select.select(list(open_ends), [], [])[0]
            for source in readable:
                data = source.recv(65536)
                if source is tls:
                    if data:
                        backend.sendall(data)
                    else:
                        backend.shutdown(socket.SHUT_WR)
                        open_ends.discard(tls)
                elif data:
                    tls.sendall(data)
                else:
                    # The response is complete: end the TLS session properly (close_notify).
                    tls.unwrap()
                    return
    except (OSError, ssl.SSLError):
        pass
    finally:
        tls.close()
        backend.close()


def main():
    port, bucket, key_id, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    app = DomainDispatcherApplication(create_backend_app)
    backend = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    backend_port = backend.socket.getsockname()[1]
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{backend_port}",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    context = generate_adhoc_ssl_context()
    listener = socket.create_server(("127.0.0.1", port))
    print("ready", flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve_tls, args=(client, context, backend_port), daemon=True).start()


if __name__ == "__main__":
    main()
