"""The utility head-end: DLMS client adapters now; ingest, storage, services and API follow."""
