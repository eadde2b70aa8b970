"""Data: corpus sources, tokenizers, the Ray Data prepare pipeline, exact stream positions.

    check_sources(config.data)      # cheap, no Ray: fail early with one line
    manifest = prepare(config)      # packed parquet shards + manifest.json (reused when present);
                                    # data.sources: a weighted mixture, interleaved when packing
    rows = PackedRows(dataset_dir(config), "train", config.data.shuffle_seed,
                      config.data.shuffle_window)
    row_ids, tokens = rows.take(position, count)   # int32 [count, seq_len + 1]
    # in a Train worker: a rank's rows of each step through Ray Data (data.ingest), see ingest
"""

from raygrow.data.manifest import Manifest
from raygrow.data.packed import PackedRows
from raygrow.data.pipeline import DatasetPlan, dataset_dir, plan_dataset, prepare
from raygrow.data.sources import check_sources
from raygrow.data.tokenizer import Tokenizer, load_tokenizer

__all__ = ["DatasetPlan", "Manifest", "PackedRows", "Tokenizer", "check_sources", "dataset_dir",
           "load_tokenizer", "plan_dataset", "prepare"]
