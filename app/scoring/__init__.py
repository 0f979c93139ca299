"""``fusionserve score``: offline bulk scoring of a CSV, JSON Lines or Parquet table of images
and texts with the local engine, into a resumable Parquet dataset. Imports pyarrow; nothing
of the server imports this package."""
