# --py-files module of the staged application.
def double(x):
    return 2 * x
