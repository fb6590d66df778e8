"""The story's chapters, in order. Each module holds a chapter's text and assembles its figures and tables from
:mod:`kernelscope.experiments`; it defines ``CHAPTER = kernelscope.story.Chapter(...)``. A new chapter is a new
module plus one line in :data:`CHAPTERS`.
"""

from __future__ import annotations

from .ch05_primer import CHAPTER as PRIMER
from .ch10_linsys import CHAPTER as LINSYS
from .ch15_learning import CHAPTER as LEARNING
from .ch20_kernels import CHAPTER as KERNELS
from .ch30_nets import CHAPTER as NETS
from .ch35_mnist1d import CHAPTER as MNIST1D
from .ch40_lazy import CHAPTER as LAZY
from .ch50_pathkernel import CHAPTER as PATHKERNEL
from .ch60_spirals import CHAPTER as SPIRALS

CHAPTERS = [PRIMER, LINSYS, LEARNING, KERNELS, NETS, MNIST1D, LAZY, PATHKERNEL, SPIRALS]

__all__ = ["CHAPTERS"]
