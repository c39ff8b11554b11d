"""The real Human3.6M test set, when the data root holds it: read exactly as VideoPose3D's protocol says."""
from __future__ import annotations

import pytest

from posegate.datasets.h36m import FILE_2D_CPN, FILE_3D

pytestmark = pytest.mark.accuracy


def test_official_test_set_reads_as_the_protocol_says(run_context):
    """236 sequences of S9 and S11, 2D at least as long as the mocap, the published file sizes."""
    real = [d for d in run_context.datasets.get("h36m", {}).values() if d is not None]
    if not real:
        pytest.skip("no Human3.6M set under --data-root: supply data_3d_h36m.npz and data_2d_h36m_cpn_ft_h36m_dbb.npz "
                    "(VideoPose3D's DATASETS.md) in a folder there, with h36m-cameras/cameras.json beside it")
    for ds in real:
        sizes = {f: (ds.root / f).stat().st_size for f in (FILE_3D, FILE_2D_CPN) if (ds.root / f).is_file()}
        assert len(ds.sequences) == 236, f"{ds.root}: {len(ds.sequences)} test sequences, the protocol has 236"
        assert ds.is_official, f"{ds.root}: not the official protocol's inputs ({ds.keypoints} 2D)"
        for key in ds.sequences:
            assert ds.inputs(key).shape[0] == ds.targets(key).shape[0]
        assert sizes.get(FILE_2D_CPN) == 272_757_484, f"{ds.root / FILE_2D_CPN}: {sizes.get(FILE_2D_CPN)} bytes"
