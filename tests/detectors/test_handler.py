import numpy as np
import pytest
import skimage.data

from veilset.detectors.base import Detection
from veilset.detectors.handler import DetectorModelHandler
from tests.detectors.kernels import confident


def test_handler_validates_up_front():
    with pytest.raises(ValueError, match="none"):
        DetectorModelHandler("none")
    with pytest.raises(ValueError, match="0"):
        DetectorModelHandler("centerface", max_batch_size=0)
    h = DetectorModelHandler("centerface:threshold=0.4", max_batch_size=3)
    assert h.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 3}
    assert h.get_metrics_namespace() == "veilset_detector_centerface"


def test_run_inference_on_mixed_sizes_directly():
    h = DetectorModelHandler("centerface")
    model = h.load_model()
    imgs = [skimage.data.astronaut(), np.zeros((50, 70, 3), np.uint8)]
    res = list(h.run_inference(imgs, model))
    assert len(confident(res[0].inference)) == 1 and res[1].inference == []  # a flat image has no peak
    assert res[0].example is imgs[0] and res[0].model_id == "centerface"
    assert isinstance(res[0].inference[0], Detection)
    with pytest.raises(ValueError, match="uint8"):
        list(h.run_inference([np.zeros((5, 5), np.uint8)], model))


def test_keyed_run_inference_in_beam():
    import apache_beam as beam
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    astro = skimage.data.astronaut()
    items = [("astro", astro), ("crop", np.ascontiguousarray(astro[:300, 100:350])),
             ("blank", np.zeros((64, 96, 3), np.uint8))]
    with TestPipeline() as p:
        out = (p | beam.Create(items)
               | RunInference(KeyedModelHandler(DetectorModelHandler("centerface", max_batch_size=2)))
               | beam.Map(lambda kv: (kv[0], [d.label for d in confident(kv[1].inference)], kv[1].model_id)))
        assert_that(out, equal_to([("astro", ["face"], "centerface"), ("crop", ["face"], "centerface"),
                                   ("blank", [], "centerface")]))
