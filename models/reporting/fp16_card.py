"""The model card of a float16 bundle, rendered from ``fp16-bundle``'s report."""

from __future__ import annotations

from typing import Any

TITLES = {
    "image_encoder": "Image encoder",
    "text_encoder": "Text encoder",
    "fusion_head": "Fusion head",
}


def _mb(entry: dict[str, Any]) -> str:
    return f"{entry['bytes'] / 1e6:.1f} MB"


def _models(report: dict[str, Any]) -> list[str]:
    lines = [
        "| Model | Precision | Source file | New file | float16 / float32 weights after |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for key, title in TITLES.items():
        entry = report["models"][key]
        weights = entry.get("weights_after")
        counts = f"{weights['float16']:,} / {weights['float32']:,}" if weights else "-"
        lines.append(
            f"| {title} | {entry['precision']} | {_mb(entry['source'])} | "
            f"{_mb(entry['written'])} | {counts} |"
        )
    return lines


def _kernels(report: dict[str, Any]) -> list[str]:
    kernels = report.get("kernels")
    if not kernels:
        return []
    lines = [
        "",
        "Which nodes ran in float16 when the bundle was started (one profiled run of each "
        "converted model on its provider; ONNX Runtime runs a node that has no float16 kernel "
        "there in float32 between inserted casts, its weights float16-rounded):",
        "",
        "| Model | Provider | Nodes | float16 | float32 |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for key, entry in kernels.items():
        counts = entry["by_input_precision"]
        lines.append(
            f"| {TITLES[key]} | {entry['provider']} | {entry['kernels']} | "
            f"{counts.get('float16', 0)} | {counts.get('float32', 0)} |"
        )
    return lines


def _check(check: dict[str, Any] | None) -> list[str]:
    if check is None:
        return ["No dataset was given: the bundle was only started and warmed up, not compared."]
    image, text = check["image_cosine"], check["text_cosine"]
    return [
        f"On {check['rows']} held-out rows ({check['source']}), through the service's pipeline, "
        "both bundles on the same provider: embedding cosine to the source's (mean / min) image "
        f"{image['mean']:.6f} / {image['min']:.6f}, text {text['mean']:.6f} / "
        f"{text['min']:.6f}; fused top-1 agreement {check['fused_top1_agreement']:.4f}; largest "
        f"difference of a class probability {check['fused_max_abs_probability_diff']:.5f}.",
    ]


def render_card(report: dict[str, Any], evaluation: list[str] | None = None) -> str:
    """Markdown for ``model_card.md``; ``evaluation`` (lines) is added as its own section."""
    source, bundle = report["source"], report["bundle"]
    lines = [
        f"# {bundle['name']} {bundle['version']}",
        "",
        f"A float16 copy of the bundle **{source['name']} {source['version']}** for GPUs, "
        "written by `fusionserve fp16-bundle` with ONNX Runtime's float16 converter "
        "(`onnxruntime.transformers.float16`, float32 inputs and outputs kept, so the manifest's "
        "interface is the source's). The tokenizer, the labels and the preprocessing are the "
        "source bundle's; see its model card for the data and the head.",
        "",
        "## Conversion",
        "",
        *_models(report),
        *_kernels(report),
        "",
        "## Check against the source bundle",
        "",
        *_check(report.get("check")),
    ]
    if evaluation:
        lines += ["", "## Evaluation", "", *evaluation]
    versions = report.get("versions")
    if versions:
        used = ", ".join(f"{name} {version}" for name, version in versions.items())
        lines += ["", f"Made with {used}."]
    return "\n".join(lines) + "\n"
