"""The seeded request set: deterministic, its texts read from bench/harness/payload_texts.json,
and its bodies well-formed multipart that carry exactly the request's image and text."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from bench.harness import payloads
from bench.harness.payloads import RequestSet, build_requests, describe_requests

RESULTS = Path(payloads.__file__).resolve().parents[1] / "results" / "results.json"
SEED = 20240603

# sha256 over each pool's texts, one per line: pins the file the results were measured with.
POOL_DIGESTS = {
    "48": "e552d1fec5f75119b5412ffaebead2e82c337352b8aa974013ba7d936909b01d",
    "8": "2edb07425599f8e9a47fefd11db4602226a3e07335267449d2ccaea72f9c35c6",
}


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty request-set cache, so that a test builds the set itself."""
    monkeypatch.setattr(payloads, "CACHE_DIR", tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RequestSet]:
    """The decode-memory suite's set (8 images, 200 texts), built once; tests only read it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(payloads, "CACHE_DIR", tmp_path_factory.mktemp("small"))
        yield build_requests(images=8, texts=200)


@pytest.fixture(scope="module")
def full_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RequestSet]:
    """The benchmarks' default request set (48 images, 10,000 texts), built once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(payloads, "CACHE_DIR", tmp_path_factory.mktemp("requests"))
        yield build_requests()


def _parse(body: bytes, content_type: str) -> dict[str, EmailMessage]:
    """The form fields of a multipart body, by name, parsed by the standard library."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    assert isinstance(message, EmailMessage)
    assert message.is_multipart()
    fields = {}
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        fields[name] = part
    return fields


def test_texts_file_holds_distinct_pools_for_the_sets_the_suites_build() -> None:
    data = json.loads(payloads.TEXTS_FILE.read_text(encoding="utf-8"))
    assert data["seed"] == SEED
    assert "models.recipes.fashion_mnist.titles" in data["source"]
    pools = data["texts_after_images"]
    assert {key: len(pool) for key, pool in pools.items()} == {"48": 10000, "8": 200}
    for key, pool in pools.items():
        assert len(set(pool)) == len(pool)
        assert all(text and text == text.strip() and "\r" not in text for text in pool)
        digest = hashlib.sha256("\n".join(pool).encode()).hexdigest()
        assert digest == POOL_DIGESTS[key]


def test_build_reads_its_texts_from_the_file(small_set: RequestSet) -> None:
    pools = json.loads(payloads.TEXTS_FILE.read_text(encoding="utf-8"))["texts_after_images"]
    assert small_set.texts == pools["8"]
    assert len(small_set) == 200
    assert len(small_set.images) == 8
    # A smaller set of the same images takes the pool's first texts: the draws were in order.
    assert payloads._texts(150, 8, SEED) == pools["8"][:150]


@pytest.mark.parametrize(
    ("images", "texts", "seed"), [(48, 10001, SEED), (8, 201, SEED), (5, 10, SEED), (8, 10, 1)]
)
def test_sets_the_file_cannot_supply_are_refused(
    fresh_cache: Path, images: int, texts: int, seed: int
) -> None:
    with pytest.raises(ValueError, match="payload_texts.json"):
        build_requests(images=images, texts=texts, seed=seed)


def test_the_set_is_the_same_built_twice_and_read_back_from_the_cache(fresh_cache: Path) -> None:
    first = build_requests(images=8, texts=200)
    (cached,) = fresh_cache.glob("requests-8-200-*.pickle")
    cached.rename(fresh_cache / "moved-aside")
    second = build_requests(images=8, texts=200)  # built again from the seed
    third = build_requests(images=8, texts=200)  # read back from the cache
    for other in (second, third):
        assert [first.body(i) for i in range(200)] == [other.body(i) for i in range(200)]
        assert other.images == first.images
    assert (fresh_cache / "moved-aside").read_bytes() == cached.read_bytes()


def test_bodies_carry_the_requests_image_and_text(small_set: RequestSet) -> None:
    requests = small_set
    for index in (0, 7, 8, 199, 200, 1234):
        image, text = requests.inputs(index)
        assert text == requests.texts[index % 200]
        assert image == requests.images[index % 8].data
        fields = _parse(requests.body(index), requests.content_type)
        assert set(fields) == {"image", "text"}
        assert fields["image"].get_payload(decode=True) == image
        expected_type = "image/png" if image.startswith(b"\x89PNG") else "image/jpeg"
        assert fields["image"].get_content_type() == expected_type
        assert fields["text"].get_payload(decode=True) == text.encode()


def test_extra_fields_follow_the_text(small_set: RequestSet) -> None:
    requests = small_set
    explained = requests.with_fields({"explain": "true"})
    assert explained.texts == requests.texts
    fields = _parse(explained.body(3), explained.content_type)
    assert list(fields) == ["image", "text", "explain"]
    assert fields["explain"].get_payload(decode=True) == b"true"
    assert fields["text"].get_payload(decode=True) == requests.texts[3].encode()
    # Without extra fields the suffix is the plain one.
    assert requests.with_fields({}).suffixes == requests.suffixes


def test_next_index_keeps_counting_so_no_text_repeats(small_set: RequestSet) -> None:
    requests = RequestSet(small_set.images, small_set.texts, small_set.suffixes)  # own counter
    indices = [requests.next_index() for _ in range(200)]
    assert indices == list(range(200))
    assert len({requests.inputs(i)[1] for i in indices}) == 200


def test_the_default_set_is_the_one_the_committed_results_were_measured_with(
    full_set: RequestSet,
) -> None:
    """Everything in results.json's request summary that does not depend on the image
    encoder's exact bytes (image sizes in KiB would change with a Pillow upgrade)."""
    recorded = json.loads(RESULTS.read_text())["requests"]
    described = describe_requests(full_set)
    stable = ("images", "png", "jpeg", "dimensions", "texts", "distinct_texts")
    assert {key: described[key] for key in stable} == {key: recorded[key] for key in stable}
