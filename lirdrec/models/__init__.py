"""Models: every one a :class:`~lirdrec.models.base.Recommender` registered by its CLI name.

>>> import lirdrec
>>> lirdrec.models.get("lightgcn").__name__
'LightGCN'
>>> sorted(lirdrec.models.get(n).__name__ for n in lirdrec.models.names()) == sorted(
...     c for c in lirdrec.models.__all__ if c[0].isupper() and c != "Recommender")
True
"""

from lirdrec.models.base import Recommender, bpr_loss
from lirdrec.models.bm3 import BM3
from lirdrec.models.dragon import DRAGON
from lirdrec.models.dualgnn import DualGNN
from lirdrec.models.freedom import FREEDOM
from lirdrec.models.grcn import GRCN
from lirdrec.models.itemknncbf import ItemKNNCBF
from lirdrec.models.lattice import LATTICE
from lirdrec.models.layergcn import LayerGCN
from lirdrec.models.lgmrec import LGMRec
from lirdrec.models.lightgcn import LightGCN
from lirdrec.models.lirdrec import LIRDRec
from lirdrec.models.mf import MF
from lirdrec.models.mgcn import MGCN
from lirdrec.models.mmgcn import MMGCN
from lirdrec.models.pop import Pop
from lirdrec.models.registry import get, names, register
from lirdrec.models.slmrec import SLMRec
from lirdrec.models.smore import SMORE
from lirdrec.models.vbpr import VBPR

# Importing each model module above registers it under its CLI name.
__all__ = [
    "BM3",
    "DRAGON",
    "DualGNN",
    "FREEDOM",
    "GRCN",
    "ItemKNNCBF",
    "LATTICE",
    "LGMRec",
    "LIRDRec",
    "LayerGCN",
    "LightGCN",
    "MF",
    "MGCN",
    "MMGCN",
    "Pop",
    "Recommender",
    "SLMRec",
    "SMORE",
    "VBPR",
    "bpr_loss",
    "get",
    "names",
    "register",
]
