"""The data plane of a Kafka indexing task: records in, Parquet segments out.

No HTTP and no Kafka client here: the peon feeds :class:`IngestPipeline` with
``supervisor.records.Record`` batches and publishes the :class:`SegmentFile` list
that :meth:`IngestPipeline.finish` returns.
"""

from middlemanager.ingest.models import ParseExceptionReport, RejectedRecord, RowStats, SegmentFile
from middlemanager.ingest.pipeline import MAX_RECORD_BYTES, IngestPipeline

__all__ = [
    "MAX_RECORD_BYTES",
    "IngestPipeline",
    "ParseExceptionReport",
    "RejectedRecord",
    "RowStats",
    "SegmentFile",
]
