"""Models: the MODELS registry (keys are the CLI words): each model's config and its class.

The table names each model's config dataclass (:mod:`tfseq.models.configs`,
importable without TensorFlow) and its class as ``"module:Class"``, imported
when the model is first built: the command line, ``--help`` and config
validation know every model and hyperparameter without loading TensorFlow. A
new model is one more line here.
"""

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from tfseq.models import configs as c
from tfseq.registry import Registry

MODELS: Registry = Registry("model")
MODELS.add("bsarec", c.BSARecConfig, "tfseq.models.bsarec:BSARec")
MODELS.add("cnn", c.CNNConfig, "tfseq.models.cnn:CNN")
MODELS.add("core_ave", c.COREAveConfig, "tfseq.models.core:COREAve")
MODELS.add("core_trm", c.CORETrmConfig, "tfseq.models.core:CORETrm")
MODELS.add("difsr", c.DIFSRConfig, "tfseq.models.difsr:DIFSR")
MODELS.add("gru4rec", c.GRU4RecConfig, "tfseq.models.gru4rec:GRU4Rec")
MODELS.add("hrm", c.HRMConfig, "tfseq.models.hrm:HRM")
MODELS.add("lstm", c.LSTMConfig, "tfseq.models.lstm:LSTM")
MODELS.add("pooling", c.PoolingConfig, "tfseq.models.pooling:Pooling")
MODELS.add("pop", c.PopConfig, "tfseq.models.pop:Pop")
MODELS.add("sasrec", c.SASRecConfig, "tfseq.models.sasrec:SASRec")
MODELS.add("sasrec_f", c.SASRecFConfig, "tfseq.models.sasrec_f:SASRecF")

__all__ = ["MODELS"]
