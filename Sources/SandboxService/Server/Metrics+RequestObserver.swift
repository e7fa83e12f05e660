extension Metrics: RequestObserver {
    func requestCompleted(_ request: CompletedRequest) {
        observe(route: request.route, method: request.method, status: request.status, seconds: request.seconds)
        if request.bytesUploaded > 0 { addUploaded(request.bytesUploaded) }
        if request.bytesDownloaded > 0 { addDownloaded(request.bytesDownloaded) }
    }
}
