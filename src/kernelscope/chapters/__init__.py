"""The story's chapters, one module each; every module defines ``CHAPTER = kernelscope.tour.Chapter(...)``.

The tour discovers them itself (see :func:`kernelscope.tour.chapters`): adding a chapter is adding a module.
"""
