"""A stand-in for OpenAI's Files and Batches endpoints (the Batch API), for tests/test_batch.py.

It is tests/oracle_server.py's server with more routes (standard library only):

    POST /v1/files                 multipart upload (purpose=batch, file)       GET /v1/files[?purpose=batch]
    GET  /v1/files/{id}/content    a file's bytes
    POST /v1/batches               {input_file_id, endpoint, completion_window}  GET /v1/batches, /v1/batches/{id}

A batch runs in a thread: its input file is checked as OpenAI checks it (JSONL, unique string custom_id, method
POST, the batch's url, a body; at most `max_requests` lines), then every line's body is POSTed to this same server's
/v1/chat/completions, so the oracle's scripted answers and per-item faults (`per_item`, by the first turn's text)
are exactly those a synchronous run of select.py gets. Answers with status 200 go to the output file (in reverse
order: the API promises none), the others to the error file. Counters: `uploads`, `creates`, `retrieves`, `lists`.

Controls (attributes of the server):
    hang           "after_upload" (the file is stored), "before_create" (nothing is made) or "after_create" (the
                   batch exists and runs): the request then gets no answer until `unhang` is set; `hanging` is set
                   when it happens (a test kills the client then)
    hold           an Event, set by default: cleared, batches stay in_progress until it is set again
    line_errors    custom_id -> (code, message): that request fails without an HTTP answer (`error` of its line)
    answer_limit   answer only the first N lines, then the batch expires (the rest get no line)
    max_bytes      an upload bigger than this is refused with 400, as OpenAI refuses files over 200 MB

    python tests/batch_server.py --port 8012     # then select.py --batch --base-url http://127.0.0.1:8012/v1
"""
import argparse
import email.parser
import email.policy
import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

try:
    from tests import oracle_server
except ImportError:  # run as a script: tests/ is sys.path[0]
    import oracle_server


class BatchServer(oracle_server.OracleServer):
    def __init__(self, addr, **kw):
        super().__init__(addr, **kw)
        self.RequestHandlerClass = BatchHandler
        self.files, self.batches, self.next_id = {}, {}, itertools.count(1)
        self.uploads, self.creates, self.retrieves, self.lists = 0, 0, 0, 0
        self.hang, self.hanging, self.unhang = None, threading.Event(), threading.Event()
        self.hold = threading.Event()
        self.hold.set()
        self.line_errors, self.answer_limit = {}, None
        self.max_requests, self.max_bytes = 50_000, 200 * 10 ** 6

    def new_id(self, prefix):
        return f"{prefix}-{next(self.next_id):04d}"

    def add_file(self, name, data, purpose):
        with self.lock:
            fid = self.new_id("file")
            self.files[fid] = {"meta": {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                                        "filename": name, "purpose": purpose, "status": "processed"},
                               "data": data}
        return fid

    def chat(self, body, auth):
        """(status, JSON body or raw text) of one chat request sent to this server."""
        req = urllib.request.Request(self.url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": auth or ""})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def run_batch(self, b, auth):
        self.hold.wait()
        data = self.files[b["input_file_id"]]["data"]
        lines, problem = [], None
        for n, raw in enumerate(data.decode("utf-8").splitlines(), 1):
            try:
                line = json.loads(raw)
            except ValueError:
                problem = ("invalid_json_line", "not JSON", n)
                break
            if not isinstance(line.get("custom_id"), str) or line["custom_id"] in {x["custom_id"] for x in lines}:
                problem = ("duplicate_custom_id", "custom_id missing, not a string, or repeated", n)
            elif line.get("method") != "POST" or line.get("url") != b["endpoint"] or not isinstance(
                    line.get("body"), dict):
                problem = ("invalid_request", f"method must be POST, url {b['endpoint']}, body an object", n)
            if problem:
                break
            lines.append(line)
        if problem is None and len(lines) > self.max_requests:
            problem = ("too_many_requests", f"{len(lines)} requests, more than {self.max_requests}", None)
        if problem is None and not lines:
            problem = ("empty_file", "the input file holds no requests", None)
        if problem:
            code, message, n = problem
            with self.lock:
                b.update(status="failed", failed_at=int(time.time()),
                         errors={"object": "list", "data": [{"code": code, "message": message, "line": n}]})
            return
        counts = b["request_counts"]
        counts["total"] = len(lines)
        b["status"] = "in_progress"
        out, err = [], []
        for n, line in enumerate(lines):
            if self.answer_limit is not None and n >= self.answer_limit:
                break
            cid = line["custom_id"]
            if cid in self.line_errors:
                code, message = self.line_errors[cid]
                err.append({"id": f"batch_req_{n}", "custom_id": cid, "response": None,
                            "error": {"code": code, "message": message}})
            else:
                status, body = self.chat(line["body"], auth)
                (out if status == 200 else err).append(
                    {"id": f"batch_req_{n}", "custom_id": cid, "error": None,
                     "response": {"status_code": status, "request_id": f"req_{n}", "body": body}})
            counts["completed" if out and out[-1]["custom_id"] == cid else "failed"] += 1
        b["status"] = "finalizing"
        dump = lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode()  # noqa: E731
        output_id = self.add_file(f"{b['id']}_output.jsonl", dump(out[::-1]), "batch_output")
        error_id = self.add_file(f"{b['id']}_error.jsonl", dump(err), "batch_output") if err else None
        expired = self.answer_limit is not None and len(lines) > self.answer_limit
        with self.lock:
            b.update(output_file_id=output_id, error_file_id=error_id, status="expired" if expired else "completed",
                     **{("expired_at" if expired else "completed_at"): int(time.time())})


class BatchHandler(oracle_server.Handler):
    def _route(self):
        path, _, query = self.path.partition("?")
        parts = [p for p in path.split("/") if p]  # ['v1', 'files', id, 'content']
        return (parts[1:] if parts[:1] == ["v1"] else parts), urllib.parse.parse_qs(query)

    def _hang(self, where):
        srv = self.server
        if srv.hang == where:
            srv.hanging.set()
            srv.unhang.wait(120)
            self.close_connection = True
            return True
        return False

    def _list(self, items):
        with self.server.lock:  # a batch's thread may be changing them
            self.server.lists += 1
            data = json.dumps({"object": "list", "data": items, "has_more": False,
                               "first_id": items[0]["id"] if items else None,
                               "last_id": items[-1]["id"] if items else None}).encode()
        return self._send(200, None, data=data)

    def do_GET(self):
        srv = self.server
        parts, query = self._route()
        if parts[:1] == ["files"]:
            if len(parts) == 1:
                purpose = query.get("purpose", [None])[0]
                with srv.lock:
                    files = sorted(srv.files.values(), key=lambda f: f["meta"]["id"], reverse=True)
                return self._list([f["meta"] for f in files if purpose is None or f["meta"]["purpose"] == purpose])
            f = srv.files.get(parts[1])
            if f is None:
                return self._error(404, f"No such File object: {parts[1]}", "invalid_request_error")
            if parts[2:] == ["content"]:
                return self._send(200, None, data=f["data"], content_type="application/octet-stream")
            return self._send(200, f["meta"])
        if parts[:1] == ["batches"]:
            if len(parts) == 1:
                with srv.lock:
                    batches = sorted(srv.batches.values(), key=lambda b: b["id"], reverse=True)
                return self._list(batches)
            b = srv.batches.get(parts[1])
            if b is None:
                return self._error(404, f"No batch found with id '{parts[1]}'", "invalid_request_error")
            with srv.lock:
                srv.retrieves += 1
                data = json.dumps(b).encode()
            return self._send(200, None, data=data)
        return super().do_GET()

    def do_POST(self):
        srv = self.server
        parts, _ = self._route()
        if parts == ["files"]:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            head = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
            fields = {part.get_param("name", header="content-disposition"): part for part in msg.iter_parts()}
            if "file" not in fields or "purpose" not in fields:
                return self._error(400, "an upload needs a file and a purpose", "invalid_request_error")
            data = fields["file"].get_payload(decode=True)
            if len(data) > srv.max_bytes:
                return self._error(400, f"File is too large ({len(data)} bytes, at most {srv.max_bytes})",
                                   "invalid_request_error")
            fid = srv.add_file(fields["file"].get_filename(), data, fields["purpose"].get_payload(decode=True).decode())
            with srv.lock:
                srv.uploads += 1
            if self._hang("after_upload"):
                return
            return self._send(200, srv.files[fid]["meta"])
        if parts == ["batches"]:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self._hang("before_create"):
                return
            f = srv.files.get(body.get("input_file_id"))
            if f is None or f["meta"]["purpose"] != "batch":
                return self._error(400, f"no input file {body.get('input_file_id')!r} with purpose batch",
                                   "invalid_request_error")
            if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
                return self._error(400, "endpoint must be /v1/chat/completions and completion_window 24h",
                                   "invalid_request_error")
            with srv.lock:
                srv.creates += 1
                bid = srv.new_id("batch")
                b = srv.batches[bid] = {
                    "id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                    "input_file_id": body["input_file_id"], "completion_window": "24h", "status": "validating",
                    "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
                    "metadata": body.get("metadata"), "request_counts": {"total": 0, "completed": 0, "failed": 0}}
                data = json.dumps(b).encode()
            threading.Thread(target=srv.run_batch, args=(b, self.headers.get("Authorization")), daemon=True).start()
            if self._hang("after_create"):
                return
            return self._send(200, None, data=data)
        return super().do_POST()


def start(port=0, **kw):
    """Start a server in a daemon thread (for tests); returns it (srv.url, its controls, srv.shutdown())."""
    srv = BatchServer(("127.0.0.1", port), **kw)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8012, help="port on 127.0.0.1 (0: any free port, printed)")
    a = p.parse_args()
    srv = BatchServer(("127.0.0.1", a.port))
    print(f"batch test server on {srv.url}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
