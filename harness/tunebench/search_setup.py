"""What every process of a search does before its clock starts: the plugins, the data, the record.

Shared by lane 0 (`tunebench.worker`), the other lanes (`tunebench.lanes`) and the test
evaluation, so that each prepares its data the same way.
"""

from __future__ import annotations

import json
import os
import socket
from typing import TYPE_CHECKING

from tunebench.models import objective_for
from tunebench.provenance import check_fingerprint, hardware, memory_limit, versions

if TYPE_CHECKING:
    from tunebench.datasets import Dataset, Splits
    from tunebench.job import SearchJob
    from tunebench.models import ModelFamily
    from tunebench.store import Store
    from tunebench.strategies import SearchStrategy


def instantiate(job: SearchJob) -> tuple[Dataset, ModelFamily, SearchStrategy]:
    """The job's dataset, model family and strategy, from the installed plugins (and the job's own)."""
    from tunebench.registry import load_plugins

    catalog = load_plugins(job.plugins)
    dataset = catalog.datasets.get(job.dataset.name)(**job.dataset.options)
    dataset.plugin_version = catalog.datasets.info(job.dataset.name).version  # part of its cache key
    family = catalog.model_families.get(job.model_family.name)(**job.model_family.options)
    strategy = catalog.strategies.get(job.strategy.name)(**job.strategy.options)
    return dataset, family, strategy


def prepare_splits(job: SearchJob, dataset: Dataset) -> tuple[Splits, str]:
    """This process's splits, trained as the suite says (precision set, data placed on the device
    when it fits), and where the data went. Every lane of a search prepares its data here."""
    from tunebench import training

    training.set_precision(job.training)
    data, placement = training.place_data(dataset.splits(job.seed), job.training.data_on_device)
    print(f"training data: {placement}", flush=True)
    return data, placement


def load_and_record(job: SearchJob, store: Store, dataset: Dataset) -> Splits:
    """Lane 0's set-up: the splits, checked against other runs' fingerprint, and the run's provenance."""
    import keras

    data, placement = prepare_splits(job, dataset)
    check_fingerprint(store, job.run_id, data.fingerprint)
    if dataset.notes.get("summary"):
        print(f"dataset '{dataset.name}': {dataset.notes['summary']}", flush=True)
    if dataset.notes.get("skipped"):
        print(f"dataset '{dataset.name}': skipped {dataset.notes['skipped']} unreadable image(s): "
              f"{json.dumps(dataset.notes.get('skipped_files', {}), indent=1)}", flush=True)
    store.update_run(job.run_id, host=socket.gethostname(), pid=os.getpid(),
                     backend=keras.backend.backend(), versions=versions(),
                     hardware=dict(hardware(), data_placement=placement, memory_limit_bytes=memory_limit()),
                     split_fingerprint=data.fingerprint, split_sizes=data.sizes,
                     data_notes=dataset.notes or None,
                     objective=objective_for(data.spec.task))
    return data
