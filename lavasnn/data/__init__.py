"""Data for lavasnn: classification data sets (static images and events) as binary spikes.

``load_dataset(spec)`` returns a :class:`Dataset`; trainers call ``Dataset.spikes`` only.
"""

from lavasnn.data.classification import SPECS, Dataset, balanced_subset, load_dataset
from lavasnn.data.encoding import DataError, Events, rate_encode

__all__ = ["SPECS", "DataError", "Dataset", "Events", "balanced_subset", "load_dataset",
           "rate_encode"]
