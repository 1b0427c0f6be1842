"""The catalog schema: one YAML file per dataset (``catalog/datasets/``) or model
(``catalog/models/``). An entry's name is its file name without ``.yaml``.

Every model forbids unknown keys, so a misspelt key is an error, not a silent default.
Checks that need more than one field (references between parts and entries, shared URLs)
live in ``vcat.catalog.lint`` where they can point at the offending line.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vcat.catalog.fields import (
    Amount,
    ByteSize,
    ChecksumText,
    FileName,
    IsoDate,
    Number,
    PartName,
    Positive,
    Ref,
    RelativePath,
    SizeText,
    SourceUrl,
    WebUrl,
    whole_number,
)
from vcat.catalog.yaml_source import Location


class Strict(BaseModel):
    """Base of every catalog model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)


class Redistribution(StrEnum):
    """Whether the licence lets us push copies to a remote others can read."""

    ALLOWED = "allowed"
    FORBIDDEN = "forbidden"
    UNKNOWN = "unknown"  # treated as forbidden until someone reads the terms


class Licence(Strict):
    name: str = Field(description="SPDX identifier where one applies, else the terms' title.")
    url: WebUrl | None = Field(None, description="Where the terms are published.")
    redistribution: Redistribution
    notes: str | None = None


class AccessKind(StrEnum):
    PUBLIC = "public"  # anyone can download from the listed sources
    REGISTRATION = "registration"  # downloads need an account or a signed agreement
    MANUAL = "manual"  # obtained by hand or by a third-party tool; vcat checks the tree


class Access(Strict):
    kind: AccessKind
    url: WebUrl | None = Field(None, description="Where to register or download.")
    instructions: str | None = Field(
        None, description="How to obtain the data (Markdown). Required unless public."
    )

    @model_validator(mode="after")
    def _instructions_when_not_public(self) -> Self:
        if self.kind != AccessKind.PUBLIC and not self.instructions:
            raise ValueError(f"access of kind {self.kind!r} needs 'instructions'")
        return self


class Paper(Strict):
    title: str
    venue: str | None = None
    year: whole_number(1900, 2100) | None = None
    url: WebUrl | None = None
    bibtex: str | None = None


class ArchiveKind(StrEnum):
    NONE = "none"
    AUTO = "auto"  # upstream does not say; detected from the file's first bytes when fetched
    ZIP = "zip"
    TAR = "tar"
    TAR_GZ = "tar.gz"
    TAR_BZ2 = "tar.bz2"
    TAR_XZ = "tar.xz"
    GZIP = "gz"


class ChecksumOrigin(StrEnum):
    PUBLISHED = "published"  # stated by upstream: its guide, README or release page
    RECORDED = "recorded"  # hashed from a download someone trusted (`vcat catalog record`)


class ChecksumSource(Strict):
    """Where a source's checksum (and exact size) come from, so a reader can judge them."""

    kind: ChecksumOrigin
    where: str | None = Field(
        None, description="published: the page or file that states the checksum."
    )
    date: IsoDate | None = Field(None, description="recorded: the day the file was hashed.")
    recorded_from: str | None = Field(
        None, description="recorded: what was hashed, e.g. 'first trusted download'."
    )

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.kind == ChecksumOrigin.PUBLISHED and not self.where:
            raise ValueError("a published checksum needs 'where': the page that states it")
        if self.kind == ChecksumOrigin.RECORDED and not (self.date and self.recorded_from):
            raise ValueError(
                "a recorded checksum needs 'date' and 'recorded_from' (what was hashed, "
                "e.g. 'first trusted download')"
            )
        return self


class Source(Strict):
    """One downloadable file, with what is known to verify it."""

    name: PartName
    url: SourceUrl
    filename: FileName = Field(description="Name the download is saved under.")
    size: ByteSize | None = Field(None, description="Exact size in bytes, when known.")
    size_published: SizeText | None = Field(
        None, description="The size as the upstream guide states it, e.g. '2.3Mb'."
    )
    checksum: ChecksumText = Field(
        description="'md5:<hex>', 'sha256:<hex>', or 'unpublished' when upstream gives none."
    )
    checksum_source: ChecksumSource | None = Field(
        None,
        description="Where the checksum comes from; lint requires it for a checksum that is "
        "not 'unpublished' (demo entries excepted).",
    )
    etag: str | None = Field(
        None,
        description="The server's ETag when the entry was written; a different one at fetch "
        "time is reported as upstream_changed.",
    )
    archive: ArchiveKind = ArchiveKind.NONE
    unpack_to: RelativePath | None = Field(
        None, description="Folder, relative to the dataset root, the file is placed or unpacked in."
    )
    description: str | None = None
    known_issue: str | None = Field(
        None,
        description="A defect upstream that this record reproduces faithfully (e.g. a download "
        "link shared by different files). Lint still warns about it.",
    )


class LayoutRule(Strict):
    """Files or folders matching ``glob`` under the root, with how many are expected."""

    glob: RelativePath
    type: Literal["file", "dir"] = "file"
    count: Amount | None = Field(None, description="Exact number expected.")
    min: Amount | None = None
    max: Amount | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.count is not None and (self.min is not None or self.max is not None):
            raise ValueError("give either 'count' or 'min'/'max', not both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self


class Layout(Strict):
    """The tree a manual download must produce, so that it can be checked file by file."""

    root_hint: str | None = Field(None, description="Where the upstream guide puts the root.")
    rules: list[LayoutRule] = Field(min_length=1)
    tree: str | None = Field(None, description="The tree as the upstream guide draws it.")


class Count(Strict):
    """How many items of one unit exist, as the paper used them and as released."""

    unit: str = Field(description="What is counted: images, pairs, videos, scenes, ...")
    published: Amount | None = Field(None, description="As used or stated in the paper.")
    released: Amount | None = Field(None, description="As actually downloadable.")
    note: str | None = None

    @model_validator(mode="after")
    def _some_number(self) -> Self:
        if self.published is None and self.released is None:
            raise ValueError("a count needs 'published', 'released' or both")
        return self


class ListFormat(StrEnum):
    FLICKR_TSV_GZ = "flickr-tsv-gz"  # id \t url \t relative path, gzip
    MEMMAP_S120 = "memmap-s120"  # headerless numpy memmap of 120-byte NUL-padded paths
    PATH_LIST = "path-list"  # one relative path per line
    KINETICS_FRAMES = "kinetics-frames"  # "<frame_dir> <n_frames>" per line
    CROCO_CROPS = "croco-crops"  # CroCo crops_release.txt (pair headers and crop lines)


class SubsetList(Strict):
    """The file that enumerates a subset: a source, or a member of an archive source."""

    source: PartName
    member: RelativePath | None = Field(None, description="Path inside the archive source.")
    format: ListFormat


class Subset(Strict):
    name: PartName
    title: str | None = None
    description: str | None = None
    count: Count | None = None
    list_file: SubsetList | None = None
    include: list[RelativePath] = Field(
        default_factory=list, description="Globs under the root that make up the subset."
    )

    @model_validator(mode="after")
    def _defined_somehow(self) -> Self:
        if self.list_file is None and not self.include:
            raise ValueError("a subset needs a 'list_file' or 'include' globs")
        return self


class Split(Strict):
    name: PartName
    description: str | None = None
    subset: PartName | None = Field(None, description="The subset this split consists of.")
    scenes: list[str] = Field(default_factory=list)
    images: list[RelativePath] = Field(
        default_factory=list, description="Images of the split, as paths under the entry's root."
    )
    held_out: bool = Field(
        False,
        description="A test or validation split: none of its scenes or images, nor a near "
        "duplicate of them, may be in a training artifact (`vcat audit leakage` checks).",
    )
    count: Count | None = None


class PrepareStep(Strict):
    """An artifact derived from the entry by a pipeline stage."""

    name: PartName
    stage: PartName = Field(
        description="The registered stage (entry point of the group 'vcat.stages') that does "
        "the work; lint refuses any other name."
    )
    description: str | None = None
    inputs: list[Ref] = Field(default_factory=list, description="Other entries or their parts.")
    params: dict[str, Any] = Field(default_factory=dict)


class EntryBase(Strict):
    title: str
    description: str
    homepage: WebUrl | None = None
    paper: Paper | None = None
    licence: Licence
    known_issues: list[str] = Field(
        default_factory=list, description="Upstream problems a user must know about."
    )
    notes: list[str] = Field(
        default_factory=list,
        description="Other remarks, e.g. processing the upstream guide applies after download "
        "that no vcat stage does (a 'prepare' step may name only a registered stage).",
    )

    def located_sources(self) -> list[tuple[Location, Source]]:
        """Every downloadable file, with its location in the entry (each kind says which)."""
        raise NotImplementedError

    def all_sources(self) -> list[Source]:
        """Every downloadable file, in catalog order."""
        return [source for _, source in self.located_sources()]


class DatasetEntry(EntryBase):
    access: Access
    sources: list[Source] = Field(default_factory=list)
    layout: Layout | None = None
    subsets: list[Subset] = Field(default_factory=list)
    splits: list[Split] = Field(default_factory=list)
    counts: list[Count] = Field(default_factory=list)
    prepare: list[PrepareStep] = Field(default_factory=list)
    quality: dict[PartName, dict[PartName, dict[str, Any]]] = Field(
        default_factory=dict,
        description="Expectations on the artifacts made from this entry, tighter than the "
        "defaults: artifact kind -> check -> its parameters (see `vcat check --list`).",
    )

    def how_obtained(self) -> str:
        """The access kind: public, registration or manual."""
        return self.access.kind

    def located_sources(self) -> list[tuple[Location, Source]]:
        """Every downloadable file, with its location in the entry."""
        return [(("sources", i), source) for i, source in enumerate(self.sources)]


class Architecture(Strict):
    library: Literal["timm", "external"] = Field(
        description="'timm' when timm builds it by name, else 'external'."
    )
    name: str = Field(description="timm model name, or the upstream project's model name.")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    backbone: Ref | None = Field(None, description="Model entry whose features this one reads.")
    code: WebUrl | None = Field(None, description="Upstream code, for external architectures.")


class InputSpec(Strict):
    width: Positive
    height: Positive
    mean: tuple[Number, Number, Number] | None = None
    std: tuple[Number, Number, Number] | None = None
    interpolation: Literal["nearest", "bilinear", "bicubic", "area", "lanczos"] | None = None
    resize: str | None = Field(None, description="How images reach width x height.")


class Features(Strict):
    dims: dict[str, Positive] = Field(description="Dimension of each output, e.g. cls: 1024.")
    patch_size: Positive | None = None
    tokens: Positive | None = Field(None, description="Patch tokens per image.")


class ProducedBy(Strict):
    stage: PartName
    checkpoint: RelativePath | None = Field(
        None,
        description="The checkpoint file the stage writes, relative to the project (under "
        "models/); dvc.lock records its checksum.",
    )
    inputs: list[Ref] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("checkpoint")
    @classmethod
    def _under_models(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("models/"):
            raise ValueError(f"checkpoint {value!r} must lie under models/ (a DVC output)")
        return value


class PublishedResult(Strict):
    dataset: Ref
    metric: str
    value: Number
    note: str | None = None


class ModelEntry(EntryBase):
    architecture: Architecture
    weights: Source | None = Field(None, description="The checkpoint file.")
    sources: list[Source] = Field(
        default_factory=list, description="Other files that come with the model."
    )
    input: InputSpec | None = None
    features: Features | None = None
    trained_on: list[Ref] = Field(default_factory=list)
    produced_by: ProducedBy | None = Field(
        None, description="For checkpoints this project trains: the stage that makes them."
    )
    published_results: list[PublishedResult] = Field(default_factory=list)

    def how_obtained(self) -> str:
        """'download' for published weights, 'trained' for checkpoints made by a stage."""
        return "download" if self.weights is not None else "trained"

    def located_sources(self) -> list[tuple[Location, Source]]:
        """The weights, then every other file, with their locations in the entry."""
        weights: list[tuple[Location, Source]] = (
            [(("weights",), self.weights)] if self.weights is not None else []
        )
        return weights + [(("sources", i), source) for i, source in enumerate(self.sources)]

    @model_validator(mode="after")
    def _weights_or_stage(self) -> Self:
        if self.weights is None and self.produced_by is None:
            raise ValueError("a model needs 'weights' to download or 'produced_by' to train it")
        return self


EntryKind = Literal["dataset", "model"]
ENTRY_MODELS: dict[EntryKind, type[EntryBase]] = {"dataset": DatasetEntry, "model": ModelEntry}
KIND_FOLDERS: dict[str, EntryKind] = {"datasets": "dataset", "models": "model"}
