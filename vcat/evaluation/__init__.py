"""Evaluation metrics: retrieval ranking (recall@k, mAP), relative pose AUC, VOP's overlap
retrieval, and copy-detection micro average precision. numpy, faiss and OpenCV only."""
