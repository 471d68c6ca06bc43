"""ONE TensorFlow-Datasets builder, driven by a `DatasetSpec` (imported lazily: TFDS is slow).

`builder_class(spec)` makes the builder of one spec: TFDS names it `spec.builder_name`, so the
data land in `data_dir/<builder_name>/<config>/<version>/`, where the config name spells out
the seed and the split sizes (`spec.config_name`). Everything is generated locally by
`spec.generate`: the download manager is never used.
"""

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from ._spec import DatasetSpec, Feature, Generated, SPLITS


@dataclasses.dataclass(eq=False)
class SpecConfig(tfds.core.BuilderConfig):
    """One seed and set of (train, validation, test) sizes of a spec's dataset."""

    seed: int = 0
    split_sizes: tuple[int, int, int] = (1, 1, 1)


def spec_config(spec: DatasetSpec, seed: int, split_sizes: tuple[int, int, int]) -> SpecConfig:
    """The builder config of one variant (seed and sizes) of `spec`'s dataset."""
    return SpecConfig(
        name=spec.config_name(seed, split_sizes),
        description=spec.config_description.format(seed=seed, sizes=split_sizes),
        seed=seed,
        split_sizes=split_sizes,
    )


def _tfds_feature(feature: Feature) -> Any:
    if feature.num_classes is not None:
        return tfds.features.ClassLabel(num_classes=feature.num_classes)
    return tfds.features.Tensor(shape=feature.shape, dtype=feature.dtype)


def _check_generated(spec: DatasetSpec, generated: Generated, sizes: tuple[int, ...]) -> None:
    """Raise a `RuntimeError` unless the generator gave every split, feature and size."""
    for split, size in zip(SPLITS, sizes):
        arrays = generated.splits.get(split, {})
        if set(arrays) != set(spec.features):
            raise RuntimeError(
                f"the generator of {spec.name!r} returned features {sorted(arrays)} for split "
                f"{split!r}; its spec declares {sorted(spec.features)}."
            )
        for name, feature in spec.features.items():
            array = np.asarray(arrays[name])
            expected = (size, *feature.shape)
            if array.shape != expected or array.dtype != np.dtype(feature.dtype):
                raise RuntimeError(
                    f"the generator of {spec.name!r} returned {name!r} of split {split!r} with "
                    f"shape {array.shape} and dtype {array.dtype}; its spec says {expected} "
                    f"and {np.dtype(feature.dtype)}."
                )
    if set(generated.metadata) != set(spec.metadata_keys):
        raise RuntimeError(
            f"the generator of {spec.name!r} returned metadata {sorted(generated.metadata)}; "
            f"its spec declares {sorted(spec.metadata_keys)}."
        )


def _keys(generated: Generated, sizes: tuple[int, ...]) -> Mapping[str, np.ndarray]:
    if generated.keys is not None:
        return generated.keys
    ends = np.cumsum(sizes)
    return {split: np.arange(end - size, end) for split, size, end in zip(SPLITS, sizes, ends)}


class NodeKitBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The builder of a node_kit dataset; `builder_class(spec)` makes one per spec."""

    SPEC: ClassVar[DatasetSpec]
    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        spec = self.SPEC
        features = {name: _tfds_feature(feature) for name, feature in spec.features.items()}
        return tfds.core.DatasetInfo(
            builder=self,
            description=spec.description,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=spec.supervised_keys,
            homepage=spec.homepage or None,
            citation=spec.citation or None,
            metadata=tfds.core.MetadataDict() if spec.metadata_keys else None,
            disable_shuffling=spec.keep_order,
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        del dl_manager  # Nothing is downloaded.
        config = self.builder_config
        assert isinstance(config, SpecConfig), "builder_class(spec) builds with SpecConfigs"
        train, validation, test = config.split_sizes
        sizes = (train, validation, test)
        generated = self.SPEC.generate(sizes, config.seed)
        _check_generated(self.SPEC, generated, sizes)
        if self.SPEC.metadata_keys:  # then `_info` gave the dataset a MetadataDict
            metadata = self.info.metadata
            assert metadata is not None
            metadata.update(generated.metadata)
        keys = _keys(generated, sizes)
        return {s: self._generate_examples(generated.splits[s], keys[s]) for s in SPLITS}

    def _generate_examples(self, arrays: Mapping[str, np.ndarray], keys: np.ndarray) -> Iterator:
        for row, key in enumerate(keys):
            yield int(key), {name: values[row] for name, values in arrays.items()}


@functools.cache
def builder_class(spec: DatasetSpec) -> type[NodeKitBuilder]:
    """The TFDS builder class of `spec`, named `spec.builder_name` (made once per spec)."""
    namespace = {
        "name": spec.builder_name,
        "SPEC": spec,
        "VERSION": tfds.core.Version(spec.version),
        "RELEASE_NOTES": {spec.version: spec.release_notes},
        "BUILDER_CONFIGS": [spec_config(spec, 0, spec.default_sizes)],
        "__doc__": spec.description,
        "__module__": __name__,
    }
    return type(f"NodeKitBuilder_{spec.name}", (NodeKitBuilder,), namespace, skip_registration=True)
