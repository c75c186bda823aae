// Transactions over juki's stores, whichever backend: `x.transaction()` returns an object that
// rolls back unless committed; inside another transaction of the same store it is a savepoint.
#pragma once

namespace renkei::juki {

class Transactional {
public:
    virtual ~Transactional() = default;

    enum class TxKind { Write, Read }; // Read: one snapshot for several reads, no write lock
    class Transaction {
    public:
        explicit Transaction(Transactional& s, TxKind kind = TxKind::Write) : s_(s), nested_(s.tx_begin(kind)) {}
        ~Transaction() {
            if (!done_) s_.tx_rollback(nested_);
        }
        void commit() {
            s_.tx_commit(nested_);
            done_ = true;
        }
        Transaction(const Transaction&) = delete;
        Transaction& operator=(const Transaction&) = delete;

    private:
        Transactional& s_;
        bool nested_;
        bool done_ = false;
    };
    Transaction transaction(TxKind kind = TxKind::Write) { return Transaction(*this, kind); }

protected:
    // Begins a transaction (or a savepoint inside one: returns true then).
    virtual bool tx_begin(TxKind kind) = 0;
    virtual void tx_commit(bool nested) = 0;
    virtual void tx_rollback(bool nested) noexcept = 0;
};

} // namespace renkei::juki
