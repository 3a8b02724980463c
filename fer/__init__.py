"""fer: facial emotion recognition at archive scale.

The data flow is visible from the package layout:

- ``fer.data``: FER-2013 readers (CSV and image folders), augmentation and class balancing.
- ``fer.train``: the architecture registry and distributed training on Ray Train.
- ``fer.bundle``: the model bundle (one format, one loader) every other part uses.
- ``fer.evaluate``: metrics of a bundle on a labelled split.
"""

__version__ = "0.3.0"  # v3 (CHANGELOG.md)
