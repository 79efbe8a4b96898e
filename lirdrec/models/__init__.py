"""Models: every one a :class:`~lirdrec.models.base.Recommender` registered by its CLI name.

>>> import lirdrec
>>> lirdrec.models.get("lightgcn").__name__
'LightGCN'
"""

from lirdrec.models.base import Recommender, bpr_loss
from lirdrec.models.registry import get, names, register

# Each model module registers itself on import.
from lirdrec.models import pop as _pop  # noqa: F401,E402
from lirdrec.models import mf as _mf  # noqa: F401,E402
from lirdrec.models import lightgcn as _lightgcn  # noqa: F401,E402
from lirdrec.models import vbpr as _vbpr  # noqa: F401,E402
from lirdrec.models import lattice as _lattice  # noqa: F401,E402
from lirdrec.models import bm3 as _bm3  # noqa: F401,E402
from lirdrec.models import freedom as _freedom  # noqa: F401,E402
from lirdrec.models.pop import Pop  # noqa: E402
from lirdrec.models.mf import MF  # noqa: E402
from lirdrec.models.lightgcn import LightGCN  # noqa: E402
from lirdrec.models import lirdrec as _lirdrec  # noqa: F401,E402
from lirdrec.models.lirdrec import LIRDRec  # noqa: E402

__all__ = ["Recommender", "bpr_loss", "get", "names", "register", "Pop", "MF", "LightGCN"]
