"""Check that the ONNX graphs agree with the manifest: tensor names, ranks and fixed dims."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from app.bundle.manifest import EncodersManifest, Manifest
from app.errors import BundleError

Dim = int | str | None


class _NodeArg(Protocol):
    name: str
    shape: Sequence[Dim]


class GraphSession(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the checks need."""

    def get_inputs(self) -> Sequence[_NodeArg]: ...

    def get_outputs(self) -> Sequence[_NodeArg]: ...


def _shapes(args: Sequence[_NodeArg]) -> dict[str, list[Dim]]:
    return {arg.name: list(arg.shape) for arg in args}


def _check_tensor(
    field: str, name: str, shapes: dict[str, list[Dim]], expected: Sequence[Dim], kind: str
) -> None:
    if name not in shapes:
        raise BundleError(field, f"{kind} '{name}' not in the graph (has {sorted(shapes)})")
    actual = shapes[name]
    if len(actual) != len(expected):
        raise BundleError(
            field, f"{kind} '{name}' has rank {len(actual)}, expected {len(expected)}"
        )
    for axis, (have, want) in enumerate(zip(actual, expected, strict=True)):
        if isinstance(have, int) and isinstance(want, int) and have != want:
            raise BundleError(
                field, f"{kind} '{name}' has size {have} on axis {axis}, expected {want}"
            )


def _check_inputs_covered(field: str, session: GraphSession, provided: set[str]) -> None:
    missing = sorted(set(_shapes(session.get_inputs())) - provided)
    if missing:
        raise BundleError(field, f"graph needs inputs the manifest does not name: {missing}")


def check_encoder_signatures(
    manifest: EncodersManifest, image: GraphSession, text: GraphSession
) -> None:
    """Raise ``BundleError`` naming the manifest field whose encoder graph disagrees with it."""
    spec = manifest.image_encoder
    (rows, columns), channels = spec.preprocess.output_size, spec.preprocess.channels
    pixel_shape: list[Dim] = (
        [None, channels, rows, columns]
        if spec.preprocess.layout == "NCHW"
        else [None, rows, columns, channels]
    )
    _check_tensor(
        "image_encoder.input", spec.input, _shapes(image.get_inputs()), pixel_shape, "input"
    )
    _check_inputs_covered("image_encoder.input", image, {spec.input})
    _check_tensor(
        "image_encoder.output",
        spec.output,
        _shapes(image.get_outputs()),
        [None, spec.embedding_dim],
        "output",
    )

    tspec = manifest.text_encoder
    text_inputs = _shapes(text.get_inputs())
    named = {
        "text_encoder.input_ids": tspec.input_ids,
        "text_encoder.attention_mask": tspec.attention_mask,
        "text_encoder.token_type_ids": tspec.token_type_ids,
    }
    for field, name in named.items():
        if name is not None:
            _check_tensor(field, name, text_inputs, [None, None], "input")
    _check_inputs_covered("text_encoder", text, {n for n in named.values() if n is not None})
    _check_tensor(
        "text_encoder.output",
        tspec.output,
        _shapes(text.get_outputs()),
        [None, tspec.embedding_dim],
        "output",
    )


def check_signatures(
    manifest: Manifest, image: GraphSession, text: GraphSession, head: GraphSession
) -> None:
    """Raise ``BundleError`` naming the manifest field whose graph disagrees with it."""
    check_encoder_signatures(manifest, image, text)
    spec, tspec = manifest.image_encoder, manifest.text_encoder
    hspec = manifest.fusion_head
    head_inputs = _shapes(head.get_inputs())
    _check_tensor(
        "fusion_head.image_input",
        hspec.image_input,
        head_inputs,
        [None, spec.embedding_dim],
        "input",
    )
    _check_tensor(
        "fusion_head.text_input",
        hspec.text_input,
        head_inputs,
        [None, tspec.embedding_dim],
        "input",
    )
    presence = {
        "fusion_head.image_present": hspec.image_present,
        "fusion_head.text_present": hspec.text_present,
    }
    for field, name in presence.items():
        if name is not None:
            _check_tensor(field, name, head_inputs, [None, 1], "input")
    head_named = {hspec.image_input, hspec.text_input} | {n for n in presence.values() if n}
    _check_inputs_covered("fusion_head", head, head_named)
    head_outputs = _shapes(head.get_outputs())
    _check_tensor("fusion_head.output", hspec.output, head_outputs, [None, None], "output")
    width = head_outputs[hspec.output][1]
    if isinstance(width, int) and width != len(manifest.labels):
        raise BundleError(
            "labels", f"{len(manifest.labels)} labels but the fusion head outputs {width} classes"
        )
