"""Reading an OpenAI-style event stream (standard library only), for the serving scripts."""
import json
import time


def read_events(response, start=None):
    """Reads `data:` events from an http.client response to `data: [DONE]` or the end of the body.
    Returns (whether [DONE] came, seconds from `start` to the first event with choices or None, the usage object
    of the usage chunk or None). A malformed event raises ValueError."""
    first, usage = None, None
    while True:
        line = response.fp.readline()
        if not line:
            return False, first, usage
        line = line.strip()
        if line == b"data: [DONE]":
            return True, first, usage
        if line.startswith(b"data: "):
            event = json.loads(line[6:])
            if event.get("choices") and first is None and start is not None:
                first = time.perf_counter() - start
            if event.get("usage"):
                usage = event["usage"]
