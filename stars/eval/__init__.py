"""Evaluation protocols: kNN, linear probe, finetune, semi-supervised, few-shot, transfer.

Every protocol is a function `run_<name>(ckpt, data, out, cfg, device, preset, ...)` with a frozen config
dataclass whose defaults are the paper's; `stars eval PROTOCOL` (stars/eval/cli.py) wires them to the
command line. docs/protocols.md states each protocol and the model-selection policy.
"""

from stars.eval.common import ProtocolResult, extract_features, load_encoder_for_eval, write_result
from stars.eval.fewshot import FewShotConfig, fewshot_accuracy, run_fewshot
from stars.eval.finetune import FinetuneConfig, from_scratch, run_finetune
from stars.eval.knn import KNNConfig, knn_majority, knn_monitor, knn_weighted, run_knn
from stars.eval.linear import LinearConfig, run_linear
from stars.eval.semi import SemiConfig, run_semi
from stars.eval.transfer import TransferConfig, run_transfer

__all__ = [
    "ProtocolResult", "extract_features", "load_encoder_for_eval", "write_result",
    "KNNConfig", "knn_majority", "knn_weighted", "knn_monitor", "run_knn",
    "LinearConfig", "run_linear", "FinetuneConfig", "from_scratch", "run_finetune",
    "SemiConfig", "run_semi", "FewShotConfig", "fewshot_accuracy", "run_fewshot",
    "TransferConfig", "run_transfer",
]
