-- Schema 23: no index of the results by item, not even of the failing ones. Each check run's
-- failing results entered `results_failing` at as many places as the catalog has items (its
-- key starts with the item), which cost a check about as much as writing the rows themselves.
-- An item's failing instances are found through the counters per block of instances instead
-- (`failing_from` in results.rs), as its listings are.
DROP INDEX IF EXISTS results_failing;
