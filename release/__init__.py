"""The release format's single owner: IDs, layout, manifest, index, log, storage and the output formats.

Built by ``veilset.pipeline``, rewritten by ``veilset.takedown``, read by ``veilset.audit``; imports none of them.

    storage      local paths and Beam FileSystems behind one module (atomic writes, reads, listings)
    ids          image IDs from content, shard numbers, annotation ids
    layout       every path of a release
    canonical    canonical JSON bytes
    records      PublishedImage, ShardFile, and the audit's ImageRecord / ImageCopy views
    jpeg         the published-JPEG byte rules (marker-segment parser)
    format       the interface a format implements (ShardFormat, ShardKey)
    parquet, coco, sa1b, images   the formats, one module each
    registry     name -> format (one line per format)
    index        index/*.jsonl, the one reader and writer
    shards       all files of one shard through the registry (write, read, without, files_of)
    log          the takedown log the manifest carries
    manifest     manifest.json: the versioned Manifest dataclass, read and written here only
    housekeeping what belongs in a release folder, and removing what does not
    fingerprint  PDQ perceptual hash + decoded-pixel hash of a published image; NearDuplicateIndex (Hamming search)
"""
