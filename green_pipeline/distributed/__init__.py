"""Batches larger than one machine: the steps' work part by part on a Dask cluster, and its energy per worker.

Used by the steps past ``dataset.max_local_bytes``; below it nothing here runs. No Dagster import: the ``dask``
resource (``orchestration.resources.DaskResource``) hands these functions a ``distributed.Client``.
"""
