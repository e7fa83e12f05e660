import Testing

@testable import SandboxService

@Suite struct DescriptorBudgetTests {
    @Test func defaultsUnderTheCommonLimitFitAndLeaveTheReserve() {
        let budget = DescriptorBudget(limit: 1024)
        #expect(budget.maxConnections == 160)
        #expect(budget.maxProcesses == 160)
        #expect(budget.fits)
        #expect(budget.limit - budget.worstCase >= 0)
    }

    @Test(arguments: [64, 100, 256, 1024, 4096, 20000, 65536, 1_048_576])
    func defaultsAlwaysFit(limit: Int) {
        let budget = DescriptorBudget(limit: limit)
        #expect(budget.maxConnections >= 1 && budget.maxConnections <= 1024)
        #expect(budget.maxProcesses >= 1)
        if limit >= DescriptorBudget.reserve + DescriptorBudget.perConnection + DescriptorBudget.perProcess {
            #expect(budget.fits, "\(budget)")
        }
    }

    @Test func connectionsAreCappedAndProcessesTakeTheRest() {
        let budget = DescriptorBudget(limit: 20000)
        #expect(budget.maxConnections == 1024)
        #expect(budget.maxProcesses == (20000 - 64 - 1024 * 3) / 3)
    }

    @Test func explicitValuesAreKeptAndCheckedAgainstTheLimit() {
        let connections = DescriptorBudget(limit: 1024, maxConnections: 10)
        #expect(connections.maxConnections == 10)
        #expect(connections.maxProcesses == (1024 - 64 - 30) / 3)
        #expect(connections.fits)
        let both = DescriptorBudget(limit: 1024, maxConnections: 500, maxProcesses: 500)
        #expect(both.maxConnections == 500 && both.maxProcesses == 500)
        #expect(!both.fits)
    }

    @Test func theGRPCListenerTakesItsShareFirst() {
        let without = DescriptorBudget(limit: 1024)
        #expect(without.maxGRPCConnections == 0)
        let with = DescriptorBudget(limit: 1024, grpc: true)
        #expect(with.maxGRPCConnections == 64)
        #expect(with.maxConnections == (1024 - 64 - 8 - 64) / 2 / 3)
        #expect(with.maxProcesses == (1024 - 64 - 8 - 64 - with.maxConnections * 3) / 3)
        #expect(with.fits)
        #expect(with.worstCase == 64 + 8 + 64 + with.maxConnections * 3 + with.maxProcesses * 3)
    }

    @Test func anExplicitGRPCConnectionCapIsKeptAndLeavesTheRestToTheOthers() {
        let budget = DescriptorBudget(limit: 1024, grpc: true, maxGRPCConnections: 4)
        #expect(budget.maxGRPCConnections == 4)
        #expect(budget.maxConnections == (1024 - 64 - 8 - 4) / 2 / 3)
        #expect(budget.fits)
        #expect(DescriptorBudget(limit: 1024, maxGRPCConnections: 4).maxGRPCConnections == 0)
    }

    @Test func directoryWatchesTakeTheirDescriptorsFirst() {
        let budget = DescriptorBudget(limit: 1024, maxWatches: 64)
        #expect(budget.maxConnections == (1024 - 64 - 64) / 2 / 3)
        #expect(budget.maxConnections == 149 && budget.maxProcesses == 149)
        #expect(budget.worstCase == 64 + 64 + budget.maxConnections * 3 + budget.maxProcesses * 3)
        #expect(budget.fits)
        let both = DescriptorBudget(limit: 1024, grpc: true, maxWatches: 64)
        #expect(both.maxConnections == 137 && both.maxProcesses == 137)
        #expect(both.fits)
        // A small limit is not all watches: they take at most an eighth of what the reserve leaves.
        let small = DescriptorBudget(limit: 128, grpc: true, maxWatches: 64)
        #expect(small.maxWatches == 8 && small.maxGRPCConnections == 7)
        #expect(small.fits)
    }

    @Test(arguments: [64, 128, 256, 1024, 65536])
    func withGRPCDefaultsStillFit(limit: Int) {
        let budget = DescriptorBudget(limit: limit, grpc: true)
        #expect(budget.maxGRPCConnections >= 1 && budget.maxGRPCConnections <= 64)
        if limit >= 128 { #expect(budget.fits, "\(budget)") }
    }
}

@Suite struct MetricsLabelTests {
    @Test func seriesOfOneFamilyShareTheirHelpAndType() {
        let metrics = Metrics {
            [
                ("demo_total{reason=\"A\"}", "Demo.", "counter", 1),
                ("demo_total{reason=\"B\"}", "Demo.", "counter", 2),
            ]
        }
        let text = metrics.render()
        #expect(text.components(separatedBy: "# TYPE demo_total counter\n").count == 2)
        #expect(text.contains("# HELP demo_total Demo.\n# TYPE demo_total counter\ndemo_total{reason=\"A\"} 1\n"))
        #expect(text.contains("demo_total{reason=\"B\"} 2\n"))
    }
}
