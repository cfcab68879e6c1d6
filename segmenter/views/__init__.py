"""What people look at: pictures (:mod:`.viz`) and the compliance evidence report
(:mod:`.report`); the notebook surface (:mod:`segmenter.notebook`) builds on both."""
