"""Ingestion: read a CSV/Parquet file, parse it per contract, validate, quarantine, version.

One module per step, composed once by :func:`tasks.ingest.compose.ingest_file` (which the
ingest flow and training both call):

``read.check_file`` (file-level problems: one clear error each) -> ``read.read_table`` (every
value as text, plus the rows whose field count is wrong) -> ``parse.parse_table`` (null
markers, typed columns, coercion failures) -> ``validate.validate_table`` (pandera, lazy, on
the collected frame) -> ``validate.split_rows`` (accepted vs quarantined, every reason kept)
-> ``snapshot.save_snapshot`` (Parquet named by its content hash, with a manifest) ->
``quality.quality_report``. The frames passed between steps are the types in ``table``; the
options a run takes are ``config.IngestOptions``.

Invariant: ``rows_in == rows_accepted + rows_quarantined``. A row is never dropped silently.
"""
