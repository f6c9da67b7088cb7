"""Weight-sharing supernet over a hybrid search space (see supernet.py for how members run).

    net = Supernet(space); net.set_active(arch); logits = net(images)
    model = net.extract(arch)   # standalone nas.builder.HybridNet with the inherited weights
"""
from nas.supernet.supernet import Supernet
from search_spaces.presets import resolve_space, space_from_dict, space_to_dict

__all__ = ["Supernet", "resolve_space", "space_from_dict", "space_to_dict"]
