"""The one place fer imports TensorFlow and tf-keras.

Distributed training uses ``MultiWorkerMirroredStrategy``, which Keras 3 cannot run
(keras-team/keras#20585), so fer uses tf-keras (Keras 2) throughout: the models, the
bundles and training all go through the ``keras`` object exported here. Importing this
module is what pulls in TensorFlow, so the rest of fer imports it lazily.
"""

from __future__ import annotations

import os

from fer._ray import TF_ENV

for _name, _value in TF_ENV.items():
    os.environ.setdefault(_name, _value)

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["keras", "tf"]
