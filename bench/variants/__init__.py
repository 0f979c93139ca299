"""The variants suite: fp32 against int8 and explain off against on, in-process and over HTTP,
side by side (``variant_benchmark``), reduced to medians and ratios (``variant_summary``) and
shown in docs/int8.md (``int8_doc``)."""
