"""Importing kiwirecorder IQ recordings as one `recording` session, and exporting sessions back.

The one import path: the files of a batch are objects ``incoming/<batch>/`` in the bucket (the CLI
uploads them there; anyone may), optionally with a positions file ``receivers.json`` and the
marker ``_untimed`` (``--untimed``: files without GNSS time are accepted for metrics only).
`importer.import_batch` checks every file (`plan.plan_import`: a named KiwiWavError per bad file),
registers the receivers the positions file adds and stores the session in one transaction; the
normal graph then records ``raw_iq`` with the `recording` source (sources/kinds/recording.py),
which reads the uploads through the reader the edge gives it (`bucket.read_upload`).
`bucket.finish_batch` moves the uploads to ``imported/<batch>/`` once every capture is stored and
its .npy object's SHA-256 equals that of the file's own samples.

A batch is complete when it holds the marker object ``_complete`` (the CLI writes it last) or
when nothing in it has changed for QUIET_PERIOD (uploads by other tools). A batch that cannot be
imported gets ``_import_errors.json`` beside its files, naming each file's problem; it is not
tried again until that object is deleted.

- `plan`: the checks and the session of a batch (pure: bytes in, a plan or named errors out);
- `bucket`: the batch's objects in S3 (upload, read, completeness, error report, the move);
- `importer`: a batch into the database;
- `export`: a stored session back to kiwirecorder files.

No Dagster: `store` is anything with get(key) -> bytes | None, put(key, body, content_type,
metadata), client() and bucket (resources/iq_store.IQStore).
"""
