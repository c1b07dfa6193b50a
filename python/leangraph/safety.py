"""Finding the ops through which a graph could act on the machine that runs it.

leangraph runs the graphs it benchmarks and evaluates, and TF's fold_constants
transform executes constant subgraphs: a `ReadFile` of a constant file name is
folded into a Const holding the file's contents (measured with TF 2.21). A
graph from a stranger must therefore be refused when it holds ops that touch
the file system, start processes or call Python, unless the caller opts in.
"""

import re

from leangraph import graphs
from leangraph.errors import GraphError

# Exact op names: file system, checkpoints, Python callbacks, debugger hooks
# that write or send, summaries written to disk, readers and lookup tables
# initialised from files.
UNSAFE_OPS = frozenset({
    # files
    "ReadFile", "WriteFile", "MatchingFiles", "ShardedFilename", "ShardedFilespec",
    "DecodeProtoV2", "ImmutableConst", "LoadAndRemapMatrix",
    # checkpoints
    "Save", "SaveSlices", "SaveV2", "Restore", "RestoreSlice", "RestoreV2",
    "MergeV2Checkpoints", "GenerateVocabRemapping",
    # Python
    "PyFunc", "PyFuncStateless", "EagerPyFunc",
    # debugger ops that write to files or URLs
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
    "DebugNumericSummary", "DebugNumericSummaryV2", "DebugGradientIdentity",
    "DebugGradientRefIdentity",
    # printing to an arbitrary file ("output_stream" may name a path)
    "PrintV2",
    # tables and vocabularies read from files
    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2",
    # datasets saved to or loaded from disk
    "SaveDataset", "SaveDatasetV2", "LoadDataset", "SnapshotDataset", "SnapshotDatasetV2",
    "SnapshotDatasetReader", "SnapshotNestedDatasetReader", "SnapshotChunkDataset",
    "CacheDataset", "CacheDatasetV2", "DatasetFromGraph",
    # distributed runtime: reach other processes or machines
    "_Send", "_Recv", "_HostSend", "_HostRecv", "Send", "Recv", "RpcCall",
    "CollectiveBcastSend", "CollectiveBcastRecv",
})

# Op-name families: readers, file-backed datasets, summary writers, sockets.
_UNSAFE_PATTERNS = re.compile(
    r"(Reader(V\d+)?$)"  # TextLineReader, TFRecordReaderV2, WholeFileReader, ...
    r"|(^(TextLine|TFRecord|FixedLengthRecord|Sql|ExperimentalSql|CSV|ExperimentalCSV|"
    r"LMDB|ExperimentalLMDB|Arrow|ParquetDataset)\w*Dataset(V\d+)?$)"
    r"|(Summary(V\d+)?$|^(Create|Write|Flush|Close|Import)\w*Summary\w*$|^SummaryWriter$)"
    r"|(^Write\w+$)"  # WriteFile, WriteScalarSummary, WriteGraphSummary, WriteRawProtoSummary, ...
    r"|(File)"  # any op with File in its name: ReadFile, WholeFileReader, *FromTextFile, ...
    r"|(^(Experimental)?(DataService|DistributedSave|RegisterDataset))"  # tf.data service: network
    r"|(^Collective)"  # collectives talk to other workers
)

# Summaries that only build protos in memory (they write nothing) are safe.
_SAFE_EXCEPTIONS = frozenset({
    "ScalarSummary", "HistogramSummary", "ImageSummary", "AudioSummary", "AudioSummaryV2",
    "TensorSummary", "TensorSummaryV2", "MergeSummary", "BoostedTreesMakeStatsSummary",
})


def is_unsafe_op(op):
    """True for an op that can touch files, processes or Python when the graph runs."""
    if op in UNSAFE_OPS:
        return True
    if op in _SAFE_EXCEPTIONS:
        return False
    return bool(_UNSAFE_PATTERNS.search(op))


def find_unsafe_ops(graph):
    """[(node name, op)] for every unsafe op, in the graph and its function library.

    graph: anything leangraph.load_graph accepts. Nodes of library functions
    are reported as "function_name/node_name".
    """
    graph_def = graphs.load_graph(graph) if not hasattr(graph, "node") else graph
    found = [(node.name, node.op) for node in graph_def.node if is_unsafe_op(node.op)]
    for function in graph_def.library.function:
        name = function.signature.name
        found.extend(
            (f"{name}/{node.name}", node.op)
            for node in function.node_def
            if is_unsafe_op(node.op)
        )
    return found


def require_safe(graph, allow_io_ops=False, what="this graph"):
    """Raises GraphError listing every unsafe node, unless allow_io_ops is true."""
    if allow_io_ops:
        return
    found = find_unsafe_ops(graph)
    if not found:
        return
    listed = ", ".join(f"{name} ({op})" for name, op in found[:20])
    more = f" and {len(found) - 20} more" if len(found) > 20 else ""
    raise GraphError(
        f"{what} contains ops that can read or write files, start processes or call "
        f"Python when it runs: {listed}{more}. Refusing it; if you trust the graph, "
        "pass allow_io_ops=True (--allow-io-ops on the command line)."
    )
