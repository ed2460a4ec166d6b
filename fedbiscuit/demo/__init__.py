"""`fedbiscuit demo`: a whole federation on localhost, each party its own process."""
