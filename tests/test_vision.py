"""The vision hosts of the describe task against stand-in Ollama and OpenAI-compatible servers."""

from __future__ import annotations

import io
import socket

import pytest
from PIL import Image

from immich_search.errors import ConfigError
from immich_search.sync.errors import PermanentJobError
from immich_search.sync.vision import DEFAULT_PROMPT, HostsDownError, VisionClient, VisionConfig, describe_many
from tests.vision_standin import VisionStandIn, image_words


def jpeg(colour=(200, 30, 30), size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def free_url() -> str:
    """A local URL nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def config(backend, *hosts, **kwargs) -> VisionConfig:
    defaults = {"model": "qwen2.5vl:3b", "retry_wait_s": 0.01, "timeout_s": 5.0}
    return VisionConfig(backend=backend, hosts=tuple(hosts), **{**defaults, **kwargs})


def test_ollama_request_shape():
    with VisionStandIn("ollama") as server:
        client = VisionClient(config("ollama", server.url, language="English"))
        answer = client.describe(jpeg())
        assert server.bad == []
        (request,) = server.requests
        assert request["path"] == "/api/chat"
        body = request["body"]
        assert body["model"] == "qwen2.5vl:3b" and body["stream"] is False
        assert body["messages"][0]["content"] == DEFAULT_PROMPT.replace("{language}", "English")
        assert "Authorization" not in request["headers"]
        assert answer.text == image_words(jpeg()).strip() and answer.host == server.url
        client.close()


def test_openai_request_shape_with_bearer_key():
    with VisionStandIn("openai", api_key="sekrit") as server:
        client = VisionClient(config("openai", server.url + "/", api_key="sekrit", prompt="Describe in {language}."))
        answer = client.describe(jpeg((10, 20, 30)))
        assert server.bad == []
        body = server.requests[0]["body"]
        assert server.requests[0]["path"] == "/v1/chat/completions"
        assert body["messages"][0]["content"][0] == {"type": "text", "text": "Describe in Chinese."}
        assert "colour" in answer.text
        client.close()
    assert "sekrit" not in repr(config("openai", "http://x", api_key="sekrit"))


def test_wrong_key_is_a_permanent_error_not_retried():
    with VisionStandIn("openai", api_key="right") as server:
        client = VisionClient(config("openai", server.url, api_key="wrong"))
        with pytest.raises(PermanentJobError, match="HTTP 400"):
            client.describe(jpeg())
        assert len(server.requests) == 1


def test_failover_and_set_aside_time():
    now = [1000.0]
    with VisionStandIn("ollama") as bad, VisionStandIn("ollama") as good:
        bad.mode = "fail"
        client = VisionClient(config("ollama", bad.url, good.url, set_aside_s=60), clock=lambda: now[0])
        assert client.describe(jpeg()).host == good.url
        assert len(bad.requests) == 3, "a 5xx is retried on the same host (3 attempts) before failing over"
        # While set aside, the failing host is not asked.
        assert client.describe(jpeg()).host == good.url
        assert len(bad.requests) == 3
        # Once the set-aside time is over it is tried again (and answers now).
        bad.mode = "ok"
        now[0] += 61
        assert client.describe(jpeg()).host == bad.url


def test_429_is_retried_with_backoff_on_the_same_host():
    with VisionStandIn("openai") as server:
        server.fail_times = 2
        client = VisionClient(config("openai", server.url))
        assert client.describe(jpeg()).host == server.url
        assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("garbage", "not JSON"), ("malformed", "malformed answer"), ("empty", "empty description")],
)
def test_bad_answers_fail_the_job_without_retrying(mode, reason):
    with VisionStandIn("ollama") as server, VisionStandIn("ollama") as other:
        server.mode = mode
        client = VisionClient(config("ollama", server.url, other.url))
        with pytest.raises(PermanentJobError, match=reason):
            client.describe(jpeg())
        assert len(server.requests) == 1 and other.requests == []


def test_a_hanging_host_times_out_and_the_next_one_answers():
    with VisionStandIn("ollama") as slow, VisionStandIn("ollama") as fast:
        slow.mode, slow.hang_s = "hang", 3.0
        client = VisionClient(config("ollama", slow.url, fast.url, timeout_s=0.3))
        assert client.describe(jpeg()).host == fast.url
        assert len(slow.requests) == 3


def test_all_hosts_down_says_when_to_try_again():
    client = VisionClient(config("ollama", free_url(), free_url(), set_aside_s=30))
    with pytest.raises(HostsDownError) as caught:
        client.describe(jpeg())
    assert caught.value.retryable and 29 <= caught.value.defer_s <= 30
    assert "ConnectError" in str(caught.value)
    # Both are set aside now: the next request fails at once, without trying them.
    with pytest.raises(HostsDownError, match="set aside"):
        client.describe(jpeg())


def test_concurrency_is_bounded_per_host():
    with VisionStandIn("ollama", delay_s=0.2) as one, VisionStandIn("ollama", delay_s=0.2) as two:
        client = VisionClient(config("ollama", one.url, two.url, max_concurrent=3))
        results = describe_many(client, [jpeg((i, 0, 0)) for i in range(20)])
        assert all(not isinstance(r, Exception) for r in results)
        assert [r.text for r in results] == [image_words(jpeg((i, 0, 0))).strip() for i in range(20)]
        assert one.max_in_flight == 3 and two.max_in_flight == 3
        assert client.max_in_flight == {one.url: 3, two.url: 3}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "gemini"}, "backend"),
        ({"hosts": ()}, "at least one"),
        ({"hosts": ("gpu:11434",)}, "http"),
        ({"model": ""}, "model"),
        ({"max_concurrent": 0}, "max-concurrent"),
    ],
)
def test_bad_configuration_is_a_clear_error(kwargs, message):
    values = {"backend": "ollama", "hosts": ("http://gpu:11434",), "model": "m", **kwargs}
    with pytest.raises(ConfigError, match=message):
        VisionConfig(**values)
