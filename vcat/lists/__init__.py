"""Image path lists as training code reads them: fixed-width memmaps and the datasets over them."""
