"""The decode-memory suite: a server's resident memory under near-cap uploads and the cost of
decoding normal photos (``decode_memory``; times), the same decodes counted in instructions
(``decode_instructions``), this checkout against a baseline checkout; ``near_cap_images``
makes the uploads, ``decoder_child`` the decoding child processes, ``decode_memory_table``
the results table."""
