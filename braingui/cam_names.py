"""Heat-map method names, their titles and one-line descriptions: plain constants with no imports, shared by
the manifest check and the command line (which must not load torch or numpy), the inference side
(:mod:`braingui.inference.cam_methods`) and the display model (:mod:`braingui.display.report_model`)."""

CAM_METHODS = ("gradcam", "gradcam++", "hirescam", "hirescam-contrastive", "layercam")
"""Every heat-map method, in the order the window lists them."""
METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "hirescam": "HiResCAM",
                 "hirescam-contrastive": "Contrastive HiResCAM", "layercam": "LayerCAM"}
"""Each method's name in words."""
METHOD_HINTS = {
    "gradcam": "Grad-CAM (through medcam, as in the paper): the layer's features weighted by the mean gradient "
               "of the class's score",
    "gradcam++": "Grad-CAM++ (through medcam): like Grad-CAM, with second-order weights for several separate foci",
    "hirescam": "HiResCAM: the layer's features times the class score's gradient, voxel by voxel (no averaging)",
    "hirescam-contrastive": "Contrastive HiResCAM: HiResCAM of the class's log-probability, the evidence for this "
                            "class against the other classes; what raises every class alike cancels",
    "layercam": "LayerCAM: the layer's features times the positive part of the gradient, voxel by voxel",
}
"""What each method's map shows, in a sentence (the window's tool tips)."""
CONTRASTIVE = {"hirescam-contrastive": "hirescam"}
"""Methods whose map explains a class against the others (its log-softmax), and the method whose formula
they apply to that score's gradient."""
CONTRASTIVE_METHODS = tuple(CONTRASTIVE)
