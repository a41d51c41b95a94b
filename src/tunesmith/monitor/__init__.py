"""Production monitoring: feedback into the next training set, input drift, one-page reports."""
