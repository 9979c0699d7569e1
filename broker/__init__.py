"""The Broker: Druid's query API (SQL and native) over the published segments.

It learns the segments over the Overlord's HTTP API and reads their Parquet files from deep storage;
it never touches the metadata store (see docs/design.md, "The Broker").
"""
