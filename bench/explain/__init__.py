"""The explain suite (``explain_overhead``): what ``explain=true`` costs a batch, in-process."""
