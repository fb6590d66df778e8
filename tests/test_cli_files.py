"""The command line's one file reader (kernelscope.cli._files): formats, a header line, shapes, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from kernelscope._arrays import ValidationError
from kernelscope.cli._files import read_array, read_table


@pytest.mark.parametrize("name, text, shape", [
    ("a.csv", "1,2,3\n4,5,6\n", (2, 3)),
    ("h.csv", "x,y,z\n1,2,3\n4,5,6\n", (2, 3)),  # one header line
    ("row.csv", "1,2,3\n", (1, 3)),  # one line of several numbers: a 1×n matrix
    ("hrow.csv", "a,b,c\n1,2,3\n", (1, 3)),
    ("col.csv", "1\n2\n3\n", (3,)),
    ("w.txt", "1 2\n3 4\n", (2, 2)),  # whitespace
    ("c.txt", "1,2\n3,4\n", (2, 2)),  # a .txt with commas
    ("t.tsv", "1\t2\n3\t4\n", (2, 2)),
])
def test_text_files(tmp_path, name, text, shape):
    (tmp_path / name).write_text(text)
    arr = read_array(tmp_path / name, "A")
    assert arr.shape == shape and arr.dtype == np.float64
    assert arr.ravel()[-1] == float(text.split()[-1].split(",")[-1].split("\t")[-1])


def test_npy_and_matrix_market(tmp_path):
    A = np.arange(6.0).reshape(2, 3)
    np.save(tmp_path / "A.npy", A)
    np.testing.assert_array_equal(read_array(tmp_path / "A.npy", "A"), A)
    scipy.io.mmwrite(tmp_path / "S.mtx", sp.csr_matrix(A))
    np.testing.assert_array_equal(read_array(tmp_path / "S.mtx", "A"), A)
    assert sp.issparse(read_array(tmp_path / "S.mtx", "A", allow_sparse=True))


def test_table_is_2d_float_finite(tmp_path):
    (tmp_path / "col.csv").write_text("y\n1\n2\n")
    t = read_table(tmp_path / "col.csv", "--train")
    assert t.shape == (2, 1) and t.dtype == np.float64
    (tmp_path / "nan.csv").write_text("1,2\n3,nan\n")
    with pytest.raises(ValidationError, match=r"--train: expected finite numbers, got a non-finite value at row 1, "
                                              r"column 1"):
        read_table(tmp_path / "nan.csv", "--train")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValidationError, match="--test: expected a non-empty 2-D table"):
        read_table(tmp_path / "empty.csv", "--test")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(ValidationError, match="a non-empty 2-D table"):
        read_table(tmp_path / "cube.npy", "--x")


@pytest.mark.parametrize("name, content, message", [
    ("missing.csv", None, "A: expected an existing file"),
    ("h.csv", "x,y\n", "A: expected a readable numeric file"),  # a header and nothing else
    ("bad.csv", "1,2\n3,x\n", "A: expected a readable numeric file"),
    ("a.json", "[1]", "A: expected a file of type .npy"),
])
def test_errors_name_the_argument(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(ValidationError, match=message) as exc:
        read_array(tmp_path / name, "A")
    assert "\n" not in str(exc.value)
