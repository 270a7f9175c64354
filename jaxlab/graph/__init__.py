"""jaxlab.graph: jraph glue shared by the graph methods (MeGuide, VectorNet, CORAL).

  graphs    GraphsTuple construction (edge lists, scipy.sparse), normalisation, self
            loops, bucketed padding budgets, node/edge/graph masks.
  layers    Linen GCN, GraphSAGE (mean) and GAT layers correct under padding; `GNN` stack.
  train     masked node-classification losses, accuracy / micro-F1, jitted steps.
  samplers  host-side GraphSAINT (node/edge/random walk), Cluster-GCN, neighbour samplers.
  data      contextual SBM generator, GraphSAINT folder and Planetoid readers/writers,
            karate club.

jraph is imported where used, so `import jaxlab.graph` works without it.
"""

from jaxlab.graph.graphs import (
                                 Budget,
                                 add_self_loops,
                                 bucket,
                                 edge_mask,
                                 edge_weights,
                                 from_edge_list,
                                 from_scipy,
                                 graph_mask,
                                 graph_pool,
                                 node_graph_index,
                                 node_mask,
                                 normalize_adjacency,
                                 normalized_graph,
                                 pad,
                                 pad_fast,
                                 pad_to_budget,
                                 remove_self_loops,
                                 reverse_index,
                                 to_scipy,
                                 with_reverse_index,
                                 zero_out_padding,
)
from jaxlab.graph.layers import GNN, GATConv, GCNConv, SAGEConv

__all__ = [
    "Budget", "add_self_loops", "bucket", "edge_mask", "edge_weights", "with_reverse_index", "from_edge_list",
    "from_scipy", "graph_pool", "node_graph_index",
    "graph_mask", "node_mask", "normalize_adjacency", "normalized_graph", "pad", "pad_fast",
    "pad_to_budget", "remove_self_loops", "reverse_index", "to_scipy", "zero_out_padding",
    "GATConv", "GCNConv", "GNN", "SAGEConv",
]
