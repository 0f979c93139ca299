"""The model card of a quantised bundle, rendered from ``quantize-bundle``'s report."""

from __future__ import annotations

from typing import Any

ENCODER_TITLES = {"image_encoder": "Image encoder", "text_encoder": "Text encoder"}
MODE_TEXT = {
    "static": "static int8 (QDQ, per-channel int8 weights, calibrated uint8 activations)",
    "dynamic": "dynamic int8 (per-channel int8 weights, activation ranges per batch)",
    "none": "unchanged (fp32)",
}


def _mb(entry: dict[str, Any]) -> str:
    return f"{entry['bytes'] / 1e6:.1f} MB"


def _encoders(report: dict[str, Any]) -> list[str]:
    lines = [
        "| Encoder | Quantisation | fp32 file | int8 file | Left in float |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for key, title in ENCODER_TITLES.items():
        entry = report[key]
        floats = ", ".join(f"`{name}`" for name in entry.get("float_nodes", [])) or "-"
        lines.append(
            f"| {title} | {MODE_TEXT[entry['mode']]} | {_mb(entry['source'])} | "
            f"{_mb(entry['quantized'])} | {floats} |"
        )
    dropped = {
        k: report[k].get("dropped_outputs")
        for k in ENCODER_TITLES
        if report[k].get("dropped_outputs")
    }
    for key, names in dropped.items():
        lines.append("")
        lines.append(
            f"{ENCODER_TITLES[key]}: graph outputs the bundle does not use were removed before "
            f"quantising ({', '.join(f'`{n}`' for n in names)})."
        )
    return lines


def _check(check: dict[str, Any] | None) -> list[str]:
    if check is None:
        return ["No dataset was given: the bundle was only started and warmed up, not compared."]
    rows = [
        "| Compared with the fp32 bundle | mean | 1st percentile | min |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, title in (
        ("image_cosine", "Image embedding cosine"),
        ("text_cosine", "Text embedding cosine"),
    ):
        c = check[key]
        rows.append(f"| {title} | {c['mean']:.4f} | {c['p1']:.4f} | {c['min']:.4f} |")
    return [
        f"On {check['rows']} held-out rows ({check['source']}), through the service's pipeline:",
        "",
        *rows,
        "",
        f"Fused top-1 label agreement: {check['fused_top1_agreement']:.4f}; largest difference of "
        f"a class probability: {check['fused_max_abs_probability_diff']:.4f}.",
    ]


def render_card(report: dict[str, Any], evaluation: list[str] | None = None) -> str:
    """Markdown for ``model_card.md``; ``evaluation`` (lines) is added as its own section."""
    source, bundle = report["source"], report["bundle"]
    lines = [
        f"# {bundle['name']} {bundle['version']}",
        "",
        f"An int8 copy of the bundle **{source['name']} {source['version']}**, written by "
        "`fusionserve quantize-bundle` with ONNX Runtime's quantisation tools. The fusion head, "
        "the tokenizer, the labels and the preprocessing are the source bundle's, unchanged; "
        "only the encoders differ. See the source bundle's model card for the data and the "
        "head.",
        "",
        "## Quantisation",
        "",
        *_encoders(report),
        "",
    ]
    cal = report.get("calibration")
    if cal is not None:
        methods = sorted(
            {m for k in ENCODER_TITLES if (m := report[k].get("calibration_method")) is not None}
        )
        ranges = f"activation ranges by the `{'`, `'.join(methods)}` method" if methods else ""
        lines += [
            f"Calibration: {cal['rows']} rows of the `{cal['split']}` split of `{cal['dataset']}` "
            f"(seed {cal['seed']}), preprocessed by the service's own image decoder and "
            f"tokenizer{'; ' + ranges if ranges else ''}. Test rows are never used.",
            "",
        ]
    if "check" in report:
        lines += ["## Check against the source bundle", "", *_check(report["check"]), ""]
    if evaluation:
        lines += ["## Evaluation", "", *evaluation, ""]
    versions = ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
    if versions:
        lines += [f"Built with {versions}.", ""]
    return "\n".join(lines)
