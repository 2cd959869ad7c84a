"""ExampleGen's driver check: a header of unknown column names over a numeric log (issue 23.4)."""

from __future__ import annotations

import gzip
import re

import pytest

from pipeline import example_gen
from pipeline.configs import ExampleGenConfig
from tfseq.data.formats import DataError


@pytest.mark.parametrize("fmt", ["sequence", "pairs"])
def test_a_header_of_unknown_column_names_is_refused_before_the_pipeline(tmp_path, fmt):
    # 'visitor' and 'sku' are not in HEADER_WORDS: read as data, line 1 was one more user.
    path = tmp_path / "log.txt.gz"
    path.write_bytes(gzip.compress(("visitor sku\n" + "".join(f"{u} {u + 7}\n" for u in range(30))).encode()))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: a header row \('visitor sku': words over "
                                        rf"lines of numbers only\), not {fmt} data; .*--check_format false reads it"):
        example_gen.check_input(ExampleGenConfig(input=str(path), input_format=fmt))
    config = ExampleGenConfig(input=str(path), input_format=fmt, check_format=False)
    assert example_gen.check_input(config) == [str(path)]
